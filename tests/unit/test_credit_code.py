import pytest

from suanli.domain.credit_code import check_character, validate_credit_code
from suanli.domain.errors import InvalidInput
from suanli.services.demo import DEMO_TENANTS


def test_published_example_is_valid() -> None:
    # The example printed in many explanations of GB 32100-2015.
    assert validate_credit_code("91350100M000100Y43") == "91350100M000100Y43"


def test_lower_case_and_spaces_are_normalised() -> None:
    assert validate_credit_code("  91350100m000100y43 ") == "91350100M000100Y43"


def test_wrong_check_character_names_the_expected_one() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_credit_code("91350100M000100Y44")
    assert "should be '3'" in exc.value.message
    assert exc.value.field == "credit_code"


@pytest.mark.parametrize("code, words", [
    ("91350100M000100Y4", "18 characters"),
    ("91350100M000100YI3", "not allowed"),
    ("91AB0100M000100Y43", "division"),
])
def test_malformed_codes_are_refused_with_a_reason(code: str, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_credit_code(code)
    assert words in exc.value.message


def test_demo_tenants_have_valid_codes() -> None:
    for tenant in DEMO_TENANTS.values():
        assert validate_credit_code(str(tenant["credit_code"]))


def test_check_character_is_zero_when_remainder_is_zero() -> None:
    # Find a prefix whose weighted sum is a multiple of 31: its check character must be '0'.
    for n in range(10**6):
        prefix = f"9137021200{n:07d}"
        if check_character(prefix) == "0":
            assert validate_credit_code(prefix + "0")
            return
    pytest.fail("no prefix found")
