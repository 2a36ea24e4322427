"""The city dashboard's map names its districts, and its legend is readable: large enough text
in a colour that stands out from the background (WCAG's 4.5:1), on the page and on the wall
display."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ..integration.conftest import Server
from .conftest import Watched, sign_in

pytestmark = pytest.mark.integration

MAP_OPTION = """() => {
  const chart = echarts.getInstanceByDom(document.getElementById("chart-map"));
  const o = chart.getOption();
  const bg = getComputedStyle(document.getElementById("chart-map")).backgroundColor;
  return {label: o.series[0].label, legend: o.visualMap[0].textStyle, background: bg,
          names: chart.getModel().getSeriesByIndex(0).getData().mapArray(
              (i) => chart.getModel().getSeriesByIndex(0).getData().getName(i))};
}"""


def luminance(color: str) -> float:
    """WCAG relative luminance of '#rrggbb' or 'rgb(r, g, b)'."""
    if color.startswith("#"):
        rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    else:
        rgb = [int(x) for x in re.findall(r"\d+", color)[:3]]
    lin = [(c / 255) / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("screen", [0, 1])
def test_the_map_names_districts_and_its_legend_is_readable(
        portal: Server, tab: Watched, screen: int) -> None:
    page = tab.page
    sign_in(tab, portal, "platform_admin")
    page.goto(f"{portal.url}/dashboard?screen={screen}")
    expect(page.locator("#chart-map")).to_have_attribute("data-points", re.compile(r"^[1-9]"), timeout=15_000)
    opt = page.evaluate(MAP_OPTION)
    assert opt["label"]["show"] is True and opt["label"]["fontSize"] >= 12
    assert "崂山区" in opt["names"] and "黄岛区" in opt["names"]  # the districts, by name
    legend = opt["legend"]
    assert legend["fontSize"] >= 13
    assert contrast(legend["color"], opt["background"]) >= 4.5, (legend, opt["background"])
    assert tab.errors == [], tab.errors
