"""``cheesecoin verify`` and ``cheesecoin network new`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from procs import vector

from cheesecoin.cli.main import main
from cheesecoin.core.cheese import network_from_blue_cheese

CHAIN = vector("chain-vectors.json")
INVALID = vector("invalid-cheeses.json")


def write(tmp_path, name, value) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def test_verify_prints_height_tip_work_balances(tmp_path, capsys):
    path = write(tmp_path, "stack.json", CHAIN["cheeses"])
    assert main(["verify", path]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "height": 3,
        "tip": CHAIN["cheeses"][-1]["smell"],
        "work": str(4 * 256),
        "balances": CHAIN["balances"],
    }


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("case", INVALID["cases"], ids=[c["rule"] for c in INVALID["cases"]])
def test_verify_names_the_sequence_number_and_rule(tmp_path, capsys, case, workers):
    path = write(tmp_path, "bad.json", CHAIN["cheeses"] + [case["cheese"]])
    assert main(["verify", "--workers", workers, path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err
    assert f"sequence_number {case['cheese']['sequence_number']}" in err
    assert f"({case['rule']})" in err


def test_verify_reports_the_first_invalid_cheese(tmp_path, capsys):
    bad_sig = INVALID["cases"][5]["cheese"]  # tx-signature, at sequence 4
    broken_middle = json.loads(json.dumps(CHAIN["cheeses"]))
    broken_middle[2]["timestamp"] += 1  # smell no longer matches
    path = write(tmp_path, "bad.json", broken_middle + [bad_sig])
    assert main(["verify", path]) == 1
    err = capsys.readouterr().err
    assert "cheese 2 (sequence_number 2) broke rule 5 (smell)" in err


@pytest.mark.parametrize(
    "content",
    ["", "{}", "[]", "not json", "[1, 2]", '"a string"', "\xff\xfe", "[" * 100000],
    ids=["empty", "object", "empty-list", "not-json", "not-cheeses", "string", "binary", "deep"],
)
def test_malformed_files_exit_2_with_one_line(tmp_path, capsys, content):
    path = write(tmp_path, "m.json", content)
    assert main(["verify", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err


def test_missing_file_and_bad_blue_cheese(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    blue = dict(CHAIN["cheeses"][0], nonce=1)
    path = write(tmp_path, "b.json", [blue])
    assert main(["verify", path]) == 1
    assert "Blue Cheese" in capsys.readouterr().err


def test_verify_as_a_real_command(tmp_path):
    path = write(tmp_path, "stack.json", CHAIN["cheeses"])
    done = subprocess.run(
        [sys.executable, "-m", "cheesecoin.cli", "verify", path], capture_output=True, text=True
    )
    assert done.returncode == 0 and json.loads(done.stdout)["height"] == 3
    done = subprocess.run(
        [sys.executable, "-m", "cheesecoin.cli", "verify"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_network_new_mines_a_loadable_blue_cheese(capsys):
    assert (
        main(
            [
                "network",
                "new",
                "--name",
                "fondue",
                "--bits",
                "6",
                "--retarget-interval",
                "5",
                "--target-spacing",
                "3",
                "--reward",
                "7",
                "--note",
                "hello",
                "--timestamp",
                "1800000000",
            ]
        )
        == 0
    )
    cheese = json.loads(capsys.readouterr().out)
    net = network_from_blue_cheese(cheese)
    assert (
        net.name,
        net.bits,
        net.retarget_interval,
        net.target_spacing,
        net.reward,
        net.note,
    ) == ("fondue", 6, 5, 3, 7, "hello")
    assert cheese["timestamp"] == 1800000000 and cheese["smell"].startswith("0")


@pytest.mark.parametrize(
    "args",
    [
        ["--bits", "0"],
        ["--bits", "200"],
        ["--bits", "x"],
        ["--bits", "4", "--retarget-interval", "1"],
        ["--bits", "4", "--reward", "-1"],
        ["--bits", "4", "--timestamp", "-1"],
        ["--bits", "4", "--timestamp", "99999999999999999999"],
        ["--bits", "4", "--reward", "99999999999999999999"],
        ["--bits", "4", "--target-spacing", "99999999999999999999"],
    ],
)
def test_network_new_refuses_bad_options(capsys, args):
    with pytest.raises(SystemExit) as info:
        code = main(["network", "new", "--name", "n"] + args)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--timestamp", "-1"], "--timestamp must be a whole number from 0 to 9223372036854775807"),
        (
            ["--timestamp", "99999999999999999999"],
            "--timestamp must be a whole number from 0 to 9223372036854775807",
        ),
        (
            ["--max-transactions", "99999999999999999999"],
            "--max-transactions must be a whole number from 0 to",
        ),
    ],
)
def test_network_new_out_of_range_says_the_range(tmp_path, args, needle):
    done = subprocess.run(
        [sys.executable, "-m", "cheesecoin.cli", "network", "new", "--name", "n", "--bits", "4"]
        + args,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and needle in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("workers", ["-3", "x"])
def test_verify_refuses_negative_workers(tmp_path, workers):
    path = write(tmp_path, "stack.json", CHAIN["cheeses"])
    done = subprocess.run(
        [sys.executable, "-m", "cheesecoin.cli", "verify", "--workers", workers, path],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.count("\n") == 1
        and "--workers" in done.stderr
        and "Traceback" not in done.stderr
    )
