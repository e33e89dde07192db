"""Directory groups from a real slapd: nested groups, a membership change at the next refresh, the last good
groups kept (and said so) while the directory is down or answers something that is not a group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ngfw.control.ldap import DirectorySync
from ngfw.lab.directory import Directory, group_dn
from tests.support.control import RunningControl, client, find, resource_doc, two_tenants


@pytest.fixture
def directory(tmp_path: Path) -> Any:
    with Directory(tmp_path / "slapd") as d:
        d.load_lab_tree()
        yield d


def site_documents(url: str, finance_dn: str = group_dn("finance")) -> list[dict[str, Any]]:
    documents = two_tenants()
    rules = next(d for d in documents if d["kind"] == "SecurityPolicy" and d["metadata"]["vsys"] == "tenant-a")
    rules["spec"]["rules"].insert(
        0,
        {
            "name": "finance-web",
            "from": ["group:web"],
            "to": ["cidr:10.77.0.100/32"],
            "services": ["tcp/80"],
            "users": ["group:finance"],
            "action": "allow",
        },
    )
    return documents + [
        resource_doc("UserSource", {"name": "corp"}, {"ldap": {"url": url, "timeout": 1, "refresh": 60}}),
        resource_doc("UserGroup", {"name": "finance", "vsys": "tenant-a"}, {"ldap": {"dn": finance_dn}}),
        resource_doc("UserGroup", {"name": "eng", "vsys": "tenant-b"}, {"ldap": {"dn": group_dn("engineering")}}),
    ]


@pytest.fixture
def site(sqlite_url: str, tmp_path: Path, tokens: dict[str, str], directory: Directory) -> Any:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    admin = client(control, tokens, "alice")
    admin.apply_documents(site_documents(directory.url), ["site.yaml"])
    admin.commit("directory groups")
    yield control, DirectorySync(control.control)
    control.stop()


def test_nested_groups_and_a_change_at_the_next_refresh(
    site: Any, directory: Directory, tokens: dict[str, str]
) -> None:
    control, sync = site
    [state] = sync.refresh_now().values()
    assert (state.ok, state.stale) == (1, False)
    groups = control.control.users.groups
    # dave is in finance through finance-auditors (nested); carol is in tenant-b's eng
    assert groups == {
        "alice": ("tenant-a/finance",),
        "bob": ("tenant-a/finance",),
        "dave": ("tenant-a/finance",),
        "carol": ("tenant-b/eng",),
    }
    revision = control.control.users.revision
    directory.set_members("finance", ["user:bob", "group:finance-auditors"])  # alice leaves finance
    sync.refresh_now()
    assert "alice" not in control.control.users.groups
    delta = control.control.users.changes(revision)  # hosts get the new groups with the next delta
    assert delta is not None and "alice" not in delta["groups"] and delta["groups"]["bob"] == ["tenant-a/finance"]
    assert sync.refresh_now()["corp"].ok == 3 and control.control.users.changes(delta["revision"]) is None


def test_the_last_good_groups_are_kept_while_the_directory_is_down(
    site: Any, directory: Directory, tokens: dict[str, str]
) -> None:
    control, sync = site
    sync.refresh_now()
    good = dict(control.control.users.groups)
    directory.pause()
    try:
        state = sync.refresh_now()["corp"]
    finally:
        directory.resume()
    assert state.stale and state.failed == 1 and state.last_error
    assert control.control.users.groups == good
    status = client(control, tokens, "vera").get("/status")
    assert status["directories"][0]["stale"] and status["directories"][0]["failed"] == 1
    assert not sync.refresh_now()["corp"].stale  # back


def test_garbage_keeps_the_last_good_groups(site: Any, directory: Directory, tokens: dict[str, str]) -> None:
    control, sync = site
    sync.refresh_now()
    good = dict(control.control.users.groups)
    # the group's DN now names a person, not a group: an answer that makes no sense
    admin = client(control, tokens, "alice")
    admin.apply_documents(site_documents(directory.url, "uid=alice,ou=people,dc=lab"), ["site.yaml"])
    admin.commit("wrong dn")
    state = sync.refresh_now()["corp"]
    assert state.stale and "is not a group" in state.last_error
    assert control.control.users.groups == good


def test_metrics_say_a_directory_is_stale(site: Any, directory: Directory) -> None:
    import urllib.request

    control, sync = site
    sync.refresh_now()
    directory.pause()
    try:
        sync.refresh_now()
    finally:
        directory.resume()
    with urllib.request.urlopen(control.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'ngfw_control_directory_stale{source="corp"} 1.0' in text
    assert 'ngfw_control_directory_refreshes_total{outcome="failed",source="corp"} 1.0' in text
    assert "ngfw_control_user_mappings 0.0" in text


def test_explain_knows_the_directory_groups_of_a_user(
    site: Any, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from ngfw.cli import main

    control, sync = site
    sync.refresh_now()

    def explain(user: str) -> str:
        os.environ["NGFW_TOKEN"] = tokens["vera"]
        try:
            assert (
                main(
                    [
                        "explain",
                        "--from",
                        "vm:web-01",
                        "--to",
                        "10.77.0.100",
                        "--service",
                        "tcp/80",
                        "--user",
                        user,
                        "--control",
                        control.url,
                    ]
                )
                == 0
            )
        finally:
            del os.environ["NGFW_TOKEN"]
        return capsys.readouterr().out

    assert "ALLOW by rule 'finance-web'" in explain("dave")  # in finance through finance-auditors
    assert "DENY by rule 'default-deny'" in explain("carol")  # in engineering only


def test_a_restarted_control_keeps_the_last_good_groups_while_the_directory_is_down(
    site: Any, directory: Directory, tokens: dict[str, str]
) -> None:
    control, sync = site
    sync.refresh_now()
    good = dict(control.control.users.groups)
    directory.pause()
    restarted = control.restart()
    try:
        assert restarted.control.users.groups == good  # from the store, before any refresh
        snapshot = restarted.control.users.changes(None)
        assert snapshot is not None and snapshot["groups"]["dave"] == ["tenant-a/finance"]
        state = DirectorySync(restarted.control).refresh_now()["corp"]
        assert state.stale and state.failed == 1 and restarted.control.users.groups == good
    finally:
        directory.resume()
        restarted.stop()


@pytest.fixture
def secure_directory(tmp_path: Path) -> Any:
    """slapd serving ldaps:// with a certificate of a throwaway CA, readable only after a bind."""
    from ngfw.lab.pki import LabCA

    pki = LabCA(tmp_path / "pki")
    issued = pki.issue("slapd", dns=("localhost",), ips=("127.0.0.1",))
    with Directory(tmp_path / "slapd", tls=(issued.cert, issued.key), require_bind=True) as d:
        d.load_lab_tree()
        yield d, pki.cert


def commit_source(control: RunningControl, tokens: dict[str, str], url: str, **ldap: Any) -> None:
    documents = site_documents(url)
    find(documents, "UserSource", "corp")["spec"]["ldap"].update(ldap)
    admin = client(control, tokens, "alice")
    admin.apply_documents(documents, ["site.yaml"])
    admin.commit(f"directory {url} {sorted(ldap)}")


def test_ldaps_with_a_bind_dn_and_a_wrong_password(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], secure_directory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import urllib.request

    from ngfw.cli import main
    from ngfw.lab.directory import READER_DN, READER_PASSWORD

    directory, ca = secure_directory
    password = tmp_path / "ldap.pw"
    password.write_text(READER_PASSWORD + "\n")
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    try:
        sync = DirectorySync(control.control)
        # anonymous: the directory lets it read nothing
        commit_source(control, tokens, directory.ldaps_url, caFile=str(ca))
        state = sync.refresh_now()["corp"]
        assert state.stale and "not found" in state.last_error and control.control.users.groups == {}
        # the reader's DN and password, over TLS verified against the lab CA
        commit_source(
            control, tokens, directory.ldaps_url, caFile=str(ca), bindDN=READER_DN, passwordFile=str(password)
        )
        state = sync.refresh_now()["corp"]
        assert (state.stale, state.last_error) == (False, "")
        good = dict(control.control.users.groups)
        assert good["dave"] == ("tenant-a/finance",) and good["carol"] == ("tenant-b/eng",)
        # a wrong password: a clear error in status and metrics, the last good groups kept
        password.write_text("not-the-password\n")
        state = sync.refresh_now()["corp"]
        assert state.stale and state.failed == 2 and control.control.users.groups == good  # with the anonymous one
        assert state.last_error == (
            f"DirectoryError: the directory refused to bind as {READER_DN}: invalidCredentials"
        ), state.last_error
        os.environ["NGFW_TOKEN"] = tokens["vera"]
        try:
            assert main(["status", "--control", control.url]) == 0
        finally:
            del os.environ["NGFW_TOKEN"]
        out = capsys.readouterr().out
        assert (
            f"STALE since the last refresh failed (DirectoryError: the directory refused to bind as {READER_DN}" in out
            and "tenant-a/finance (3 users)" in out
        ), out
        with urllib.request.urlopen(control.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'ngfw_control_directory_stale{source="corp"} 1.0' in text
        assert 'ngfw_control_directory_refreshes_total{outcome="failed",source="corp"} 2.0' in text
        password.write_text(READER_PASSWORD + "\n")  # fixed: the next refresh is good again
        assert not sync.refresh_now()["corp"].stale
        # a certificate the system's CAs do not vouch for is refused (no caFile): not read, not trusted
        commit_source(control, tokens, directory.ldaps_url, bindDN=READER_DN, passwordFile=str(password))
        state = sync.refresh_now()["corp"]
        assert state.stale and "CERTIFICATE_VERIFY_FAILED" in state.last_error and control.control.users.groups == good
    finally:
        control.stop()
