from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from suanli.domain.enums import DeviceKind, Precision
from suanli.domain.model import PoolSpec, billable_span, meter
from suanli.services.demo import demo_centers

SPEC = PoolSpec(device_kind=DeviceKind.NPU, device_model="Ascend 910B", domestic=True,
                units_per_node=8, nodes=40, memory_gb_per_node=1024, price_fen_per_unit_hour=800,
                tflops_fp16=320.0, tflops_int8=640.0, watts_per_unit=400)


def test_meter_is_exact_integer_money() -> None:
    fig = meter(SPEC, units=8, seconds=1800, precision=Precision.FP16, pue=1.25)
    assert fig.unit_seconds == 14400
    assert fig.amount_fen == 3200  # 4 unit-hours × ¥8
    assert fig.pflops_hours == 8 * 0.32 * 0.5
    assert fig.energy_wh == round(8 * 400 * 0.5 * 1.25)


def test_rounding_is_half_up_to_the_fen() -> None:
    # 1 unit × 9 s × 800 fen/h = 2 fen exactly; 1 unit × 7 s = 1.555… -> 2; 2 s = 0.44 -> 0
    assert meter(SPEC, units=1, seconds=9, precision=Precision.FP16, pue=1).amount_fen == 2
    assert meter(SPEC, units=1, seconds=7, precision=Precision.FP16, pue=1).amount_fen == 2
    assert meter(SPEC, units=1, seconds=2, precision=Precision.FP16, pue=1).amount_fen == 0


def test_missing_precision_meters_zero_pflops() -> None:
    assert meter(SPEC, units=1, seconds=3600, precision=Precision.FP64, pue=1).pflops_hours == 0


def test_demo_city_matches_the_seeds() -> None:
    centers = {c.slug: c for c in demo_centers()}
    qd_ai = centers["qd-ai"].pools[0]
    p = PoolSpec(**{k: v for k, v in vars(qd_ai).items() if k not in ("name", "identifier")})
    assert round(p.peak_pflops(Precision.FP16)) == 102  # "first phase 100P"
    hzx = centers["qd-hzx"].pools[0]
    q = PoolSpec(**{k: v for k, v in vars(hzx).items() if k not in ("name", "identifier")})
    assert 245 <= p.peak_pflops(Precision.FP16) + q.peak_pflops(Precision.FP16) <= 255  # 250P park


T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _whole(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def test_a_one_second_slurm_job_placed_mid_second_bills_its_second() -> None:
    # placed at .700, Slurm starts it in the same second and reports 08:00:00 / 08:00:01
    placed = T0 + timedelta(milliseconds=700)
    start, end = billable_span(T0, T0 + timedelta(seconds=1), placed_at=placed,
                               seen_at=placed + timedelta(seconds=3), limit_s=60)
    assert start == placed and (end - start) == timedelta(seconds=1)


@given(st.integers(0, 10_000), st.integers(0, 999_999), st.integers(0, 2_000_000),
       st.integers(0, 5_000_000), st.integers(1, 3_600))
def test_whole_second_reports_bill_the_measured_length_and_never_beyond_the_bounds(
        placed_us: int, delay_us: int, run_us: int, seen_us: int, limit_s: int) -> None:
    placed = T0 + timedelta(microseconds=placed_us)
    real_start = placed + timedelta(microseconds=delay_us)
    real_end = real_start + timedelta(microseconds=run_us)
    seen = real_end + timedelta(microseconds=seen_us)
    start, end = billable_span(_whole(real_start), _whole(real_end), placed_at=placed,
                               seen_at=seen, limit_s=limit_s)
    billed = end - start
    # never before the placement, never after suanli saw the end, never past the limit
    assert placed <= start <= end <= seen and billed <= timedelta(seconds=limit_s)
    # within a second of the true length (what whole seconds can tell), unless the limit cut it
    true = real_end - real_start
    if true < timedelta(seconds=limit_s):
        assert abs(billed - true) < timedelta(seconds=1)
    # and, unless suanli saw the end sooner or the limit cut it, exactly the center's own elapsed
    elapsed = _whole(real_end) - _whole(real_start)
    if end < seen and billed < timedelta(seconds=limit_s):
        assert billed == elapsed


@given(st.integers(-10**7, 10**7), st.integers(-10**7, 10**7), st.integers(0, 10**7))
def test_a_center_claiming_any_times_bills_no_more_than_suanli_saw(
        start_us: int, end_us: int, seen_us: int) -> None:
    placed = T0
    seen = placed + timedelta(microseconds=seen_us)
    start, end = billable_span(T0 + timedelta(microseconds=start_us),
                               T0 + timedelta(microseconds=end_us), placed_at=placed,
                               seen_at=seen, limit_s=10**6)
    assert placed <= start <= end <= seen
