"""The README benchmark block: table rendering and marker replacement."""

import pytest

from tasc.bench.report import BEGIN, END, bench_table, machine_info, machine_line, replace_section

REPORT = {"model": "runs/snips-ft", "methods": {
    "greedy": {"tokens_per_s": 20.0, "speedup": 1.0, "speedup_vs_pld": 0.95, "mean_accepted": 1.0, "identical_to_greedy": 1.0},
    "tasc-spec": {"tokens_per_s": 61.0, "speedup": 3.05, "speedup_vs_pld": 2.9, "mean_accepted": 5.2, "identical_to_greedy": 1.0},
}}


def test_bench_table_has_a_row_per_method():
    table = bench_table([("SNIPS", REPORT)]).splitlines()
    assert len(table) == 4
    assert table[3] == "| SNIPS | snips-ft | tasc-spec | 61.0 | 3.05x | 2.90x | 5.20 | 1.00 |"


def test_replace_section_keeps_the_rest():
    text = f"intro\n{BEGIN} old note -->\nold table\n{END}\noutro\n"
    new = replace_section(text, "new table")
    assert new.startswith("intro\n") and new.endswith(f"new table\n{END}\noutro\n") and "old table" not in new
    assert replace_section(new, "again").count(BEGIN) == 1
    with pytest.raises(ValueError):
        replace_section("no markers", "x")


def test_machine_info_names_date_and_cpu():
    info = machine_info()
    assert info["cores"] >= 1 and len(info["date"]) == 10
    assert info["date"] in machine_line(info)
