from suanli.domain.enums import DeviceKind, Precision
from suanli.domain.model import PoolSpec, meter
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
