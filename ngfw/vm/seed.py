"""NoCloud seeds for the ngfw VM (deploy/vm/build-image.sh): cloud-init user-data, meta-data and
network-config that say which NIC faces the VMs' bridge and which the uplink (by MAC; cloud-init names
them vmside0 and uplink0), and either a local policy (with rule files) or a control URL and token.

The seed is a FAT image labelled CIDATA (what cloud-init's NoCloud looks for), made with mtools: no
loop device, no mount. `python -m ngfw.vm.seed --help` (or deploy/vm/make-seed.sh) for operators; the
lab builds its seeds with `Seed` directly.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

VM_SIDE = "vmside0"  # the NIC on the VMs' bridge
UPLINK = "uplink0"  # the NIC on the uplink bridge
MGMT = "mgmt0"  # optional: a management NIC (control, metrics, ssh)
CONFIG_DIR = "/etc/ngfw"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (policies, rules) as literal blocks: the user-data stays readable."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


class SeedError(ValueError):
    """A seed that cannot be made; the message names the bad value."""


@dataclass
class Seed:
    """What one ngfw VM is told at first boot."""

    instance_id: str
    vm_side_mac: str
    uplink_mac: str
    hostname: str = "ngfw"
    mgmt_mac: str | None = None
    mgmt_address: str | None = None  # "10.0.0.5/24"; None with a mgmt NIC: DHCP
    mgmt_gateway: str | None = None
    policy: dict[str, str] = field(default_factory=dict)  # file name -> YAML text (/etc/ngfw/policy/)
    rules: dict[str, str] = field(default_factory=dict)  # signature set -> rule text (/etc/ngfw/rules/)
    variables: dict[str, str] = field(default_factory=dict)
    control_url: str | None = None
    control_host: str | None = None
    control_token: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # more `ngfw dataplane` options (metrics, ...)
    ssh_authorized_keys: list[str] = field(default_factory=list)

    def check(self) -> None:
        for name, mac in (
            ("vm-side MAC", self.vm_side_mac),
            ("uplink MAC", self.uplink_mac),
            ("management MAC", self.mgmt_mac),
        ):
            if mac is not None and not _MAC.match(mac):
                raise SeedError(f"{name} {mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff, lower case)")
        macs = [m for m in (self.vm_side_mac, self.uplink_mac, self.mgmt_mac) if m]
        if len(set(macs)) != len(macs):
            raise SeedError(f"the NICs need different MAC addresses, got {', '.join(macs)}")
        if bool(self.policy) == bool(self.control_url):
            raise SeedError("give either a policy or a control URL (with its host name and token), not both or neither")
        if self.control_url and not (self.control_host and self.control_token):
            raise SeedError(f"control {self.control_url} needs the host name this VM reports and a dataplane token")
        for name in [*self.policy, *self.rules]:
            if "/" in name or name.startswith("."):
                raise SeedError(f"file name {name!r} must be a plain name (it goes under {CONFIG_DIR})")

    def dataplane_settings(self) -> dict[str, Any]:
        """/etc/ngfw/dataplane.yaml."""
        out: dict[str, Any] = {"wires": [f"{VM_SIDE}:{UPLINK}"]}
        if self.policy:
            out["policy"] = f"{CONFIG_DIR}/policy"
        else:
            out.update(
                {
                    "control": self.control_url,
                    "host": self.control_host,
                    "token-file": f"{CONFIG_DIR}/dataplane.token",
                    "bundle-cache": "/var/lib/ngfw/bundle.json",
                    "control-wait": 60,
                }
            )
        if self.rules:
            out["rules"] = {name: f"{CONFIG_DIR}/rules/{name}.rules" for name in self.rules}
        if self.variables:
            out["vars"] = dict(self.variables)
        out.setdefault("eve", "/var/log/ngfw/eve.json")
        out.update(self.settings)
        return out

    def user_data(self) -> str:
        def private(path: str, content: str) -> dict[str, str]:
            # the dataplane (user ngfw) reads them, nobody else
            return {"path": path, "owner": "root:ngfw", "permissions": "0640", "content": content}

        files = [private(f"{CONFIG_DIR}/dataplane.yaml", _dump(self.dataplane_settings()))]
        files += [private(f"{CONFIG_DIR}/policy/{name}", text) for name, text in self.policy.items()]
        files += [private(f"{CONFIG_DIR}/rules/{name}.rules", text) for name, text in self.rules.items()]
        if self.control_token:
            files.append(private(f"{CONFIG_DIR}/dataplane.token", self.control_token.strip() + "\n"))
        data: dict[str, Any] = {"hostname": self.hostname, "write_files": files}
        if self.ssh_authorized_keys:
            data["ssh_authorized_keys"] = list(self.ssh_authorized_keys)
        return "#cloud-config\n" + _dump(data)

    def meta_data(self) -> str:
        return _dump({"instance-id": self.instance_id, "local-hostname": self.hostname})

    def network_config(self) -> str:
        """Network config v2: the wire's NICs renamed by MAC (the image's 05-ngfw-wire.network keeps them
        free of addresses), the management NIC with DHCP or a static address."""
        ethernets: dict[str, Any] = {
            VM_SIDE: {"match": {"macaddress": self.vm_side_mac}, "set-name": VM_SIDE, "dhcp4": False, "dhcp6": False},
            UPLINK: {"match": {"macaddress": self.uplink_mac}, "set-name": UPLINK, "dhcp4": False, "dhcp6": False},
        }
        if self.mgmt_mac:
            mgmt: dict[str, Any] = {"match": {"macaddress": self.mgmt_mac}, "set-name": MGMT}
            if self.mgmt_address:
                mgmt.update({"dhcp4": False, "addresses": [self.mgmt_address]})
                if self.mgmt_gateway:
                    mgmt["gateway4"] = self.mgmt_gateway
            else:
                mgmt["dhcp4"] = True
            ethernets[MGMT] = mgmt
        return _dump({"version": 2, "ethernets": ethernets})

    def write_dir(self, directory: Path) -> Path:
        """user-data, meta-data and network-config in `directory` (what `cloud-init schema` and a
        seed image are made from)."""
        self.check()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "user-data").write_text(self.user_data())
        (directory / "meta-data").write_text(self.meta_data())
        (directory / "network-config").write_text(self.network_config())
        return directory

    def write_image(self, path: Path) -> Path:
        """The NoCloud seed: a small FAT image labelled CIDATA holding the three files."""
        for tool in ("mkfs.vfat", "mcopy"):
            if shutil.which(tool) is None:
                raise SeedError(f"{tool} is missing: install dosfstools and mtools (deploy/packages-vm.txt)")
        with tempfile.TemporaryDirectory(prefix="ngfw-seed-") as tmp:
            files = self.write_dir(Path(tmp))
            path.unlink(missing_ok=True)
            subprocess.run(["mkfs.vfat", "-n", "CIDATA", "-C", str(path), "1024"], check=True, capture_output=True)
            subprocess.run(
                [
                    "mcopy",
                    "-i",
                    str(path),
                    *(str(files / n) for n in ("user-data", "meta-data", "network-config")),
                    "::/",
                ],
                check=True,
                capture_output=True,
            )
        return path


def schema_problems(user_data: Path) -> str | None:
    """`cloud-init schema` on a user-data file: None when valid, else its complaint (SeedError when
    cloud-init is not installed)."""
    if shutil.which("cloud-init") is None:
        raise SeedError("cloud-init is not installed (deploy/packages-vm.txt): cannot validate the user-data")
    done = subprocess.run(["cloud-init", "schema", "--config-file", str(user_data)], capture_output=True, text=True)
    if done.returncode == 0 and "Valid cloud-config" in done.stdout:
        return None
    return (done.stdout + done.stderr).strip() or f"cloud-init schema exited with {done.returncode}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"{path}: {exc.strerror or exc}") from None


def _policy_files(path: str) -> dict[str, str]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and not f.name.startswith("."))
        if not files:
            raise SeedError(f"{path}: a directory without *.yaml policy files")
        return {f.name: _read(str(f)) for f in files}
    return {p.name if p.suffix in (".yaml", ".yml") else "policy.yaml": _read(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ngfw.vm.seed", description="Make a NoCloud seed (FAT image labelled CIDATA) for the ngfw VM"
    )
    parser.add_argument("--vm-side-mac", required=True, help="MAC of the NIC on the VMs' bridge (named vmside0)")
    parser.add_argument("--uplink-mac", required=True, help="MAC of the NIC on the uplink bridge (named uplink0)")
    parser.add_argument("--mgmt-mac", help="MAC of a management NIC (mgmt0; DHCP unless --mgmt-address)")
    parser.add_argument("--mgmt-address", metavar="CIDR")
    parser.add_argument("--mgmt-gateway", metavar="IP")
    parser.add_argument("--policy", metavar="PATH", help="policy file or directory to enforce")
    parser.add_argument("--rules", action="append", default=[], metavar="NAME=PATH", help="signature set (repeatable)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="rule variable (repeatable)")
    parser.add_argument("--control", metavar="URL", help="take policy from ngfw control at URL")
    parser.add_argument("--host", help="this host's name towards control")
    parser.add_argument("--token-file", metavar="FILE", help="the dataplane token for control")
    parser.add_argument("--metrics", default="0.0.0.0:9650", metavar="HOST:PORT")
    parser.add_argument("--hostname", default="ngfw")
    parser.add_argument("--instance-id", help="cloud-init instance id (default: the hostname)")
    parser.add_argument("--ssh-key", action="append", default=[], metavar="FILE", help="authorized key (repeatable)")
    parser.add_argument("--dir", metavar="DIR", help="also write user-data, meta-data, network-config here")
    parser.add_argument("-o", "--output", required=True, metavar="SEED.img")
    args = parser.parse_args(argv)
    try:
        rules = {}
        for item in args.rules:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise SeedError(f"--rules {item!r}: expected NAME=PATH")
            rules[name] = _read(path)
        variables = {}
        for item in args.var:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise SeedError(f"--var {item!r}: expected NAME=VALUE")
            variables[name] = value
        seed = Seed(
            instance_id=args.instance_id or args.hostname,
            hostname=args.hostname,
            vm_side_mac=args.vm_side_mac.lower(),
            uplink_mac=args.uplink_mac.lower(),
            mgmt_mac=args.mgmt_mac.lower() if args.mgmt_mac else None,
            mgmt_address=args.mgmt_address,
            mgmt_gateway=args.mgmt_gateway,
            policy=_policy_files(args.policy) if args.policy else {},
            rules=rules,
            variables=variables,
            control_url=args.control,
            control_host=args.host,
            control_token=_read(args.token_file) if args.token_file else None,
            settings={"metrics": args.metrics} if args.metrics else {},
            ssh_authorized_keys=[_read(k).strip() for k in args.ssh_key],
        )
        if args.dir:
            seed.write_dir(Path(args.dir))
        seed.write_image(Path(args.output))
    except SeedError as exc:
        print(f"ngfw vm seed: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.output}: NoCloud seed for {args.hostname} ({VM_SIDE} {seed.vm_side_mac}, {UPLINK} {seed.uplink_mac}"
        + (f", {MGMT} {seed.mgmt_mac}" if seed.mgmt_mac else "")
        + ")",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
