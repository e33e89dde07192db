"""NoCloud seeds of the ngfw VM: user-data that `cloud-init schema` accepts, the settings the dataplane unit
reads, NICs named by MAC, and one sentence for every bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ngfw.cli import build_parser
from ngfw.config import config_argv, subcommand_parser
from ngfw.vm.seed import Seed, SeedError, main, schema_problems

REPO = Path(__file__).resolve().parents[3]
needs_cloud_init = pytest.mark.skipif(
    shutil.which("cloud-init") is None, reason="cloud-init missing: deploy/install-lab.sh installs it (packages-vm.txt)"
)


def lab_seed(**more) -> Seed:
    values = dict(
        instance_id="t1",
        vm_side_mac="52:54:00:00:00:01",
        uplink_mac="52:54:00:00:00:02",
        policy={"lab.yaml": (REPO / "rules/examples/lab.yaml").read_text()},
        rules={"lab": (REPO / "rules/threats/lab.rules").read_text()},
        variables={"HOME_NET": "[10.77.0.0/24]"},
        settings={"metrics": "127.0.0.1:9650"},
    )
    values.update(more)
    return Seed(**values)


def written_files(seed: Seed) -> dict[str, dict]:
    data = yaml.safe_load(seed.user_data())
    return {f["path"]: f for f in data["write_files"]}


@needs_cloud_init
@pytest.mark.parametrize(
    "seed",
    [
        lab_seed(),
        lab_seed(
            policy={},
            rules={},
            control_url="http://10.0.0.1:9660",
            control_host="host-a",
            control_token="abc\n",
            mgmt_mac="52:54:00:00:00:03",
            ssh_authorized_keys=["ssh-ed25519 AAAAC3Nza test@example"],
        ),
    ],
    ids=["local-policy", "control"],
)
def test_user_data_is_valid_cloud_config(tmp_path: Path, seed: Seed) -> None:
    seed.write_dir(tmp_path)
    assert (tmp_path / "user-data").read_text().startswith("#cloud-config\n")
    assert schema_problems(tmp_path / "user-data") is None


@needs_cloud_init
def test_schema_check_names_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "user-data"
    bad.write_text("#cloud-config\nwrite_files:\n- path: /etc/x\n  permissions: 640\n  owner: [root]\n")
    problem = schema_problems(bad)
    assert problem is not None and "write_files" in problem


def test_the_dataplane_settings_it_writes_are_what_the_unit_reads() -> None:
    files = written_files(lab_seed())
    settings = files["/etc/ngfw/dataplane.yaml"]
    assert settings["owner"] == "root:ngfw" and settings["permissions"] == "0640"
    argv = config_argv_of(settings["content"])
    assert argv[:2] == ["--wire", "vmside0:uplink0"]
    assert ["--policy", "/etc/ngfw/policy"] == argv[2:4]
    assert "--rules" in argv and "lab=/etc/ngfw/rules/lab.rules" in argv
    assert "HOME_NET=[10.77.0.0/24]" in argv
    assert files["/etc/ngfw/policy/lab.yaml"]["content"] == (REPO / "rules/examples/lab.yaml").read_text()
    assert files["/etc/ngfw/rules/lab.rules"]["content"] == (REPO / "rules/threats/lab.rules").read_text()


def config_argv_of(text: str) -> list[str]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        return config_argv(f.name, subcommand_parser(build_parser(), "dataplane"))


def test_control_mode_writes_the_token_and_waits_for_control() -> None:
    files = written_files(
        lab_seed(policy={}, rules={}, control_url="http://10.0.0.1:9660", control_host="host-a", control_token="secret")
    )
    assert files["/etc/ngfw/dataplane.token"]["content"] == "secret\n"
    assert files["/etc/ngfw/dataplane.token"]["permissions"] == "0640"
    argv = config_argv_of(files["/etc/ngfw/dataplane.yaml"]["content"])
    assert argv[argv.index("--control") + 1] == "http://10.0.0.1:9660"
    assert argv[argv.index("--control-wait") + 1] == "60"
    assert argv[argv.index("--bundle-cache") + 1] == "/var/lib/ngfw/bundle.json"


def test_network_config_names_the_nics_by_mac() -> None:
    config = yaml.safe_load(lab_seed(mgmt_mac="52:54:00:00:00:03").network_config())
    assert config["version"] == 2
    eth = config["ethernets"]
    assert eth["vmside0"]["match"] == {"macaddress": "52:54:00:00:00:01"} and eth["vmside0"]["set-name"] == "vmside0"
    assert eth["uplink0"]["match"] == {"macaddress": "52:54:00:00:00:02"} and eth["uplink0"]["dhcp4"] is False
    assert eth["mgmt0"]["dhcp4"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vm_side_mac": "52:54:00:00:00"}, "vm-side MAC '52:54:00:00:00' is not a MAC address"),
        ({"uplink_mac": "52:54:00:00:00:01"}, "the NICs need different MAC addresses"),
        ({"policy": {}, "rules": {}}, "give either a policy or a control URL"),
        ({"control_url": "http://c:9660"}, "give either a policy or a control URL"),
        ({"policy": {}, "control_url": "http://c:9660"}, "control http://c:9660 needs the host name"),
        ({"policy": {"../x.yaml": "a"}}, "file name '../x.yaml' must be a plain name"),
    ],
)
def test_bad_seeds_are_one_sentence(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(SeedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lab_seed(**changes).write_dir(tmp_path)


@pytest.mark.skipif(
    shutil.which("mcopy") is None or shutil.which("mkfs.vfat") is None,
    reason="mtools/dosfstools missing: deploy/install-lab.sh installs them (packages-vm.txt)",
)
def test_the_seed_image_is_a_cidata_volume_with_the_three_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "seed.img"
    assert (
        main(
            [
                "--vm-side-mac",
                "52:54:00:00:00:01",
                "--uplink-mac",
                "52:54:00:00:00:02",
                "--policy",
                str(REPO / "rules/examples/lab.yaml"),
                "-o",
                str(image),
            ]
        )
        == 0
    )
    label = subprocess.run(["mlabel", "-i", str(image), "-s", "::"], capture_output=True, text=True).stdout
    assert "CIDATA" in label
    listing = subprocess.run(["mdir", "-b", "-i", str(image), "::/"], capture_output=True, text=True).stdout
    assert sorted(Path(p).name for p in listing.split()) == ["meta-data", "network-config", "user-data"]
    user_data = subprocess.run(["mtype", "-i", str(image), "::/user-data"], capture_output=True, text=True).stdout
    assert "vmside0:uplink0" in user_data


def test_the_seed_command_names_a_missing_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "--vm-side-mac",
                "52:54:00:00:00:01",
                "--uplink-mac",
                "52:54:00:00:00:02",
                "--policy",
                str(tmp_path / "nope.yaml"),
                "-o",
                str(tmp_path / "s.img"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == f"ngfw vm seed: {tmp_path}/nope.yaml: No such file or directory"
