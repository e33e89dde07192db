"""The parity tool (bench/suricata_parity.py): alerts compared per (flow, sid) both ways, Suricata's EVE read."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from bench import parity_compare as pc
from bench import suricata_config, suricata_offline, suricata_parity
from bench.suricata_process import LoadReport

REPO = Path(__file__).resolve().parents[3]

FIXTURES = REPO / "tests" / "fixtures" / "parity"


def eve_alert(src, sport, dst, dport, sid, proto="TCP", msg="", pcap=None, **extra):
    rec = {
        "event_type": "alert",
        "src_ip": src,
        "src_port": sport,
        "dest_ip": dst,
        "dest_port": dport,
        "proto": proto,
        "alert": {"signature_id": sid, "gid": 1, "rev": 1, "signature": msg},
        **extra,
    }
    if pcap:
        rec["pcap_file"] = pcap
    return rec


def test_a_flow_is_the_same_whichever_endpoint_sent_the_alerting_packet():
    request = pc.alert_from_eve(eve_alert("10.0.0.1", 40000, "192.0.2.1", 80, 7), "c")
    response = pc.alert_from_eve(eve_alert("192.0.2.1", 80, "10.0.0.1", 40000, 7), "c")
    assert request.key == response.key
    other_port = pc.alert_from_eve(eve_alert("10.0.0.1", 40001, "192.0.2.1", 80, 7), "c")
    assert other_port.key != request.key


def test_ipv6_in_suricatas_full_spelling_matches_the_compressed_one():
    full = pc.Flow.of("fd00:0001:0001:0000:0000:0000:0000:0002", 39990, "fd00:2:1::2", 80, "TCP")
    short = pc.Flow.of("fd00:2:1::2", 80, "fd00:1:1::2", 39990, "tcp")
    assert full == short
    assert str(full) == "TCP [fd00:1:1::2]:39990 <-> [fd00:2:1::2]:80"


def test_icmp_flows_compare_by_address_whatever_ports_each_side_reports():
    suricata = pc.Flow.of("10.0.0.5", None, "192.0.2.20", None, "ICMP")  # Suricata logs icmp_type, no ports
    ngfw = pc.Flow.of("192.0.2.20", 0, "10.0.0.5", 8, "IPv6-ICMP")
    assert suricata == ngfw


def test_agreement_is_counted_both_ways_and_each_difference_names_its_side():
    s = [
        pc.Alert("a.pcap", pc.Flow.of("10.0.0.1", 1, "10.0.0.2", 80, "TCP"), sid, msg=f"rule {sid}")
        for sid in (1, 2, 3, 4)
    ]
    n = [pc.Alert("a.pcap", pc.Flow.of("10.0.0.2", 80, "10.0.0.1", 1, "TCP"), sid) for sid in (1, 2, 3, 9)]
    c = pc.Comparison().add(s, n)
    assert (len(c.suricata), len(c.ngfw), c.matched) == (4, 4, 3)
    assert c.agreement_of_suricata == 0.75 and c.agreement_of_ngfw == 0.75
    assert not c.exact
    diffs = c.differences()
    assert [(d.sid, d.only, d.msg) for d in diffs] == [(4, "suricata", "rule 4"), (9, "ngfw", "")]
    assert diffs[0].as_dict()["flow"] == "TCP 10.0.0.1:1 <-> 10.0.0.2:80"


def test_repeated_alerts_of_one_sid_on_one_flow_count_once_and_captures_stay_apart():
    f = pc.Flow.of("10.0.0.1", 1, "10.0.0.2", 80, "TCP")
    c = pc.Comparison().add([pc.Alert("a", f, 1), pc.Alert("a", f, 1), pc.Alert("b", f, 1)], [pc.Alert("a", f, 1)])
    assert len(c.suricata) == 2 and c.matched == 1
    assert c.agreement_of_ngfw == 1.0 and c.agreement_of_suricata == 0.5
    assert sorted(c.by_capture()) == ["a", "b"]
    assert c.by_capture()["a"].exact and not c.by_capture()["b"].exact


def test_no_alerts_on_either_side_is_full_agreement():
    c = pc.Comparison()
    assert c.agreement_of_suricata == c.agreement_of_ngfw == 1.0 and c.exact


def test_ngfw_records_are_attributed_to_captures_by_pcap_file_and_flow_records_ignored():
    captures = [Path("/x/one.pcap"), Path("/y/two.pcapng")]
    labels = {"/x/one.pcap": "one.pcap", "/y/two.pcapng": "two.pcapng"}
    records = [
        {"event_type": "flow", "pcap_file": "one.pcap", "src_ip": "10.0.0.1"},
        {"pcap_file": "one.pcap", "src_ip": "10.0.0.1", "rule": "allow-all"},  # older build: a flow record
        eve_alert("10.0.0.1", 5, "10.0.0.2", 80, 11, pcap="one.pcap"),
        eve_alert("10.0.0.3", 6, "10.0.0.4", 53, 12, proto="UDP", pcap="/y/two.pcapng"),
    ]
    alerts = suricata_parity.ngfw_alerts(records, captures, labels)
    assert [(a.capture, a.sid, a.flow.proto) for a in alerts] == [("one.pcap", 11, "TCP"), ("two.pcapng", 12, "UDP")]
    with pytest.raises(suricata_parity.NgfwFailed):
        suricata_parity.ngfw_alerts([eve_alert("1.1.1.1", 1, "2.2.2.2", 2, 1, pcap="other.pcap")], captures, labels)


def test_suricata_eve_reader_keeps_alerts_and_skips_a_torn_last_line(tmp_path):
    eve = tmp_path / "eve.json"
    lines = [
        json.dumps({"event_type": "flow"}),
        json.dumps(eve_alert("10.0.0.1", 1, "10.0.0.2", 2, 5)),
        json.dumps({"event_type": "stats"}),
        '{"event_type": "alert", "src_',
    ]
    eve.write_text("\n".join(lines))
    alerts = suricata_offline.read_eve_alerts(eve)
    assert [a["alert"]["signature_id"] for a in alerts] == [5]
    assert suricata_offline.read_eve_alerts(tmp_path / "missing.json") == []


def test_expected_jsonl_lines_and_rule_messages(tmp_path):
    rules = tmp_path / "r.rules"
    rules.write_text(
        'alert tcp any any -> any any (msg:"say \\"hi\\""; content:"a"; sid:7;)\n'
        '# alert tcp any any -> any any (msg:"off"; sid:8;)\n'
        'alert udp any any -> any any (content:"b"; sid:9;)\n'
    )
    messages = suricata_parity.rule_messages([rules])
    assert messages == {7: 'say "hi"', 8: "off"}
    line = {
        "src_ip": "10.0.0.101",
        "src_port": 37533,
        "dest_ip": "8.8.8.8",
        "dest_port": 53,
        "proto": "UDP",
        "signature_id": 7,
    }
    (alert,) = suricata_parity.with_messages([pc.alert_from_expected(line, "case")], messages)
    assert alert.msg == 'say "hi"' and str(alert.flow) == "UDP 8.8.8.8:53 <-> 10.0.0.101:37533"


def _case(root: Path, name: str, expected: list[dict]) -> Path:
    case = root / name
    case.mkdir(parents=True)
    (case / "test.rules").write_text('alert udp any any -> any any (msg:"x"; content:"q"; sid:1;)\n')
    (case / "input.pcap").write_bytes(b"")
    (case / "expected.jsonl").write_text("".join(json.dumps(e) + "\n" for e in expected))
    (case / "test.json").write_text('{"source": "tests/x", "checksum_validation": false}')
    return case


def test_verify_cases_compare_the_expected_alerts_with_what_the_ngfw_runner_returns(tmp_path):
    hit = {
        "src_ip": "10.0.0.1",
        "src_port": 1000,
        "dest_ip": "10.0.0.2",
        "dest_port": 53,
        "proto": "UDP",
        "signature_id": 1,
    }
    _case(tmp_path, "alerts", [hit])
    _case(tmp_path, "quiet", [])
    asked = []

    def ngfw(pcaps, rules, variables):
        asked.append((pcaps[0].parent.name, rules[0].name))
        if pcaps[0].parent.name == "alerts":  # reported from the answer's side: same flow
            return [{"event_type": "flow"}, eve_alert("10.0.0.2", 53, "10.0.0.1", 1000, 1, "UDP", pcap="input.pcap")]
        return [eve_alert("10.0.0.9", 1, "10.0.0.2", 53, 1, "UDP", pcap="input.pcap")]  # a false positive

    report = suricata_parity.verify_cases(tmp_path, ngfw)
    assert asked == [("alerts", "test.rules"), ("quiet", "test.rules")]
    rows = {r["capture"]: r for r in report.rows()}
    assert rows["alerts"]["exact"] and not rows["quiet"]["exact"]
    assert report.comparison.agreement_of_suricata == 1.0 and report.comparison.agreement_of_ngfw == 0.5
    assert not report.ok(1.0) and report.ok(0.5)
    (diff,) = report.comparison.differences()
    assert (diff.capture, diff.only, diff.msg) == ("quiet", "ngfw", "x")
    table = suricata_parity.render_table(report, 1.0)
    assert "| quiet | 0 | 1 | 0 | NO |" in table and "only ngfw" in table


def test_command_line_exit_status_follows_the_agreement_threshold(tmp_path, capsys):
    hit = {
        "src_ip": "10.0.0.1",
        "src_port": 1000,
        "dest_ip": "10.0.0.2",
        "dest_port": 53,
        "proto": "UDP",
        "signature_id": 1,
    }
    _case(tmp_path / "cases", "one", [hit])
    recorded = tmp_path / "ngfw.jsonl"
    recorded.write_text("")  # ngfw raised nothing
    argv = ["--verify-cases", str(tmp_path / "cases"), "--ngfw-output", str(recorded), "--json"]
    assert suricata_parity.main(argv) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["pairs"] == {"suricata": 1, "ngfw": 0, "matched": 0}
    assert summary["differences"][0]["only"] == "suricata"
    recorded.write_text(json.dumps(eve_alert("10.0.0.1", 1000, "10.0.0.2", 53, 1, "UDP", pcap="input.pcap")) + "\n")
    assert suricata_parity.main(argv) == 0


def test_load_report_reads_suricatas_console():
    load = LoadReport()
    load.feed("Info: detect: 51 rule files processed. 24827 rules successfully loaded, 0 rules failed, 0", 7.5)
    load.feed("Info: detect: 24830 signatures processed. 1192 are IP-only rules, 3318 are inspecting", 7.6)
    load.feed("Notice: threads: Threads created -> W: 1 FM: 1 FR: 1   Engine started.", 17.2)
    assert (load.rule_files, load.rules_loaded, load.rules_failed, load.signatures) == (51, 24827, 0, 24830)
    assert (load.rules_loaded_s, load.engine_started_s) == (7.5, 17.2)


def test_rendered_configuration_keeps_suricatas_scalars_as_written():
    base = {"vars": {"port-groups": {"X_PORTS": "1:2"}}, "stream": {"checksum-validation": "yes"}}
    text = suricata_config.render({"stream.inline": True, "vars.address-groups.HOME_NET": "[10.0.0.0/8]"}, base)
    assert text.startswith("%YAML 1.1\n---\n")
    assert "X_PORTS: '1:2'" in text and "inline: 'yes'" in text and "HOME_NET: '[10.0.0.0/8]'" in text


def test_keyword_captures_are_regenerated_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("parity_generate", FIXTURES / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.main([str(tmp_path)]) == 0
    for name in generate.CAPTURES:
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name


@pytest.mark.skipif(shutil.which("suricata") is None, reason="Suricata 7 not installed (deploy/install.sh)")
def test_real_suricata_raises_the_sni_alert_on_the_tls_fixture(tmp_path):
    rules = tmp_path / "sni.rules"
    rules.write_text(
        'alert tls any any -> any any (msg:"sni"; tls.sni; content:"secure.parity-test.example"; sid:4242; rev:1;)\n'
    )
    pcap = FIXTURES / "tls_sni.pcap"
    result = suricata_offline.run_offline([pcap], [rules], cache=tmp_path / "cache")
    (alert,) = result.alerts[str(pcap)]
    assert alert["alert"]["signature_id"] == 4242
    assert (alert["src_ip"], alert["dest_ip"], alert["dest_port"], alert["app_proto"]) == (
        "10.0.0.3",
        "192.0.2.12",
        443,
        "tls",
    )
    assert result.load is not None and result.load.rules_loaded == 1
    again = suricata_offline.run_offline([pcap], [rules], cache=tmp_path / "cache")
    assert again.cached == 1 and again.alerts == result.alerts
