"""``cheesecoin status`` tells, for each peer, whether its link is encrypted (section 5.3)."""

from __future__ import annotations

from test_cli import Member, run  # the API bridge of the CLI tests


def test_status_says_encrypted_or_plain_per_peer(capsys) -> None:
    member = Member()
    try:
        member.node.peers_info = lambda: [
            {
                "host": "10.0.0.1",
                "port": 1,
                "node_id": "ab" * 32,
                "height": 2,
                "inbound": False,
                "encrypted": True,
            },
            {
                "host": "10.0.0.2",
                "port": 2,
                "node_id": "cd" * 16,
                "height": 2,
                "inbound": True,
                "encrypted": False,
            },
            {"host": "10.0.0.3", "port": 3, "node_id": "ef" * 16, "height": 2, "inbound": True},
        ]
        code, out, err = run(capsys, "status", "--member", member.url)
    finally:
        member.stop()
    assert code == 0 and err == ""
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["10.0.0.1:1"].endswith("node abababababab  encrypted")
    assert lines["10.0.0.2:2"].endswith("node cdcdcdcdcdcd  plain")
    assert lines["10.0.0.3:3"].endswith("node efefefefefef")  # a member that does not say
