"""How the demo turns what clients saw into verdicts, and EVE records into a report."""

from ngfw.lab.demo import Check, Outcome, classify, demo_checks, eve_action, format_eve, format_outcomes
from ngfw.lab.topology import lab_plan


def test_curl_outcomes_map_to_verdicts():
    argv = ("curl", "http://10.77.0.100/")
    assert classify(argv, 0, "HTTP 200", "")[0] == "allowed"
    assert classify(argv, 28, "", "timed out")[0] == "denied"
    assert classify(argv, 7, "", "Connection refused")[0] == "rejected"
    assert classify(argv, 6, "", "could not resolve")[0] == "error"


def test_ping_outcomes_map_to_verdicts():
    argv = ("ping", "10.77.0.100")
    verdict, detail = classify(argv, 0, "3 packets transmitted, 3 received, 0% packet loss", "")
    assert (verdict, detail) == ("allowed", "3/3 replies")
    assert classify(argv, 1, "3 packets transmitted, 0 received", "")[0] == "denied"


def test_the_demo_covers_allow_deny_reject_and_a_blocked_threat():
    checks = demo_checks(lab_plan("x"))
    assert [(c.client, c.expect) for c in checks] == [
        ("web1", "allowed"), ("web1", "allowed"), ("web2", "denied"), ("web1", "rejected"), ("web1", "denied"),
    ]  # fmt: skip
    assert any("http://10.77.0.100:8080/" in c.argv for c in checks)
    assert any("http://10.77.0.100:8443/" in c.argv for c in checks)
    # the last one is allowed by policy on port 80 and blocked by a drop signature of the demo's rules
    assert checks[-1].argv[-1].startswith("http://10.77.0.100/cgi-bin/") and "exploit" in checks[-1].argv[-1]


def test_unexpected_verdicts_are_flagged():
    check = Check("web2", "HTTP", ("curl",), "denied", "default-deny")
    lines = format_outcomes([Outcome(check, "allowed", "HTTP 200", 0.01)], baseline=False)
    assert "UNEXPECTED" in lines[-1]
    assert "UNEXPECTED" not in format_outcomes([Outcome(check, "allowed", "HTTP 200", 0.01)], baseline=True)[-1]


def test_eve_action_top_level_or_nested():
    assert eve_action({"event_type": "drop", "action": "deny"}) == "deny"
    assert eve_action({"event_type": "alert", "alert": {"action": "blocked"}}) == "blocked"
    assert eve_action({"event_type": "flow"}) == "-"


def test_eve_report_counts_and_lists_records():
    lines = format_eve(
        [
            {"event_type": "drop", "src_ip": "10.77.0.12", "dest_ip": "10.77.0.100", "dest_port": 8080,
             "rule": "default-deny", "action": "deny"},
            {"event_type": "stats"},
        ]
    )  # fmt: skip
    assert lines[0] == "  records: drop 1, stats 1"
    assert "default-deny" in lines[-1] and "8080" in lines[-1]
