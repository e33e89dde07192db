#!/usr/bin/env bash
# Build ngfw's wheel and Debian package into dist/, on Debian 12 (what they run on):
#   dist/ngfw-VERSION-cp311-cp311-linux_ARCH.whl  the compiled fastpath (libhs, libpcre2, libcrypto, zlib: named
#                                                 in its metadata as Requires-External)
#   dist/ngfw_VERSION-REV_ARCH.deb                the `ngfw` command in its own virtualenv (/opt/ngfw/venv),
#                                                 /usr/bin/ngfw, the systemd units, logrotate; its Depends
#                                                 are the runtime libraries only (dpkg-shlibdeps)
# Needs deploy/packages.txt (compiler, headers, python3-venv, dpkg-dev) and PyPI (the build's Cython, the
# virtualenv's packages: binary wheels only, nothing is compiled but the fastpath). Root is not needed.
#   --reuse-wheel   package the wheel already in dist/ (skips the 1-2 minutes of compiling the fastpath)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
# the caller's Python paths (a test run's PYTHONPATH=the clone) would make pip see the clone's ngfw as
# installed already and leave it out of the package's virtualenv
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE

reuse_wheel=no
for arg in "$@"; do
    case "$arg" in
        --reuse-wheel) reuse_wheel=yes ;;
        *) echo "deploy/build-packages.sh: unknown argument $arg (--reuse-wheel)" >&2; exit 2 ;;
    esac
done

# Debian's interpreter, by its versioned name: the package's virtualenv links to it, and Depends names
# python3.11, which has no /usr/bin/python3 (that is the python3 package, absent from a minimal system)
pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
python=/usr/bin/python$pyver
version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision="${NGFW_DEB_REVISION:-1}"
arch=$(dpkg --print-architecture)
build="$here/build/packages"
root="$build/src/debian/ngfw"   # where dpkg-shlibdeps expects a package's files
venv=/opt/ngfw/venv

missing=()
for p in $(sed 's/#.*//' deploy/packages.txt); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deploy/build-packages.sh: missing Debian packages (deploy/packages.txt): ${missing[*]}" >&2
    exit 1
fi

rm -rf "$build"
mkdir -p "$build" dist

# 1. the wheel: built in isolation (pip fetches setuptools, wheel and Cython for the build alone)
wheel_glob="dist/ngfw-$version-cp${pyver/./}-cp${pyver/./}-linux_*.whl"
if [ "$reuse_wheel" = yes ] && compgen -G "$wheel_glob" >/dev/null; then
    echo "deploy/build-packages.sh: reusing $(echo $wheel_glob)"
else
    "$python" -m venv "$build/tools"
    "$build/tools/bin/python" -m pip install -q --upgrade pip
    echo "deploy/build-packages.sh: building the wheel (compiles the fastpath: 1-2 minutes)"
    rm -f $wheel_glob
    # pip builds in the source tree: what an earlier build left in build/lib* would go into the wheel too
    rm -rf build/lib.* build/bdist.*
    "$build/tools/bin/python" -m pip wheel -q --no-deps -w "$build/wheel" .
    # the system libraries the compiled fastpath links, in the wheel's metadata (core metadata
    # Requires-External) with the versions it was built against
    "$python" - "$build"/wheel/ngfw-*.whl dist <<'PY'
import base64, hashlib, os, subprocess, sys, zipfile

src, out_dir = sys.argv[1], sys.argv[2]
libs = []
# (Debian: libhyperscan5, libpcre2-8-0, libssl3, zlib1g; the wire program's loader adds libbpf1)
for module in ("libhs", "libpcre2-8", "libcrypto", "zlib", "libbpf"):
    version = subprocess.run(["pkg-config", "--modversion", module], capture_output=True, text=True,
                             check=True).stdout.strip()
    libs.append(f"Requires-External: {module} (>={version})")
out = os.path.join(out_dir, os.path.basename(src))
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
    names = zin.namelist()
    metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
    head, sep, body = zin.read(metadata_name).decode().partition("\n\n")
    metadata = (head + "\n" + "\n".join(libs) + sep + body).encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(metadata).digest()).rstrip(b"=").decode()
    record = [f"{metadata_name},sha256={digest},{len(metadata)}" if line.startswith(metadata_name + ",") else line
              for line in zin.read(record_name).decode().splitlines()]
    for info in zin.infolist():
        if info.filename == metadata_name:
            zout.writestr(info, metadata)
        elif info.filename == record_name:
            zout.writestr(info, "\n".join(record) + "\n")
        else:
            zout.writestr(info, zin.read(info.filename))
print("\n".join(libs))
PY
fi
wheel=$(ls $wheel_glob)
echo "deploy/build-packages.sh: wheel $wheel"

# 2. the package's virtualenv, built where it will live under $root, then moved there by path rewriting
# (what dh-virtualenv does); binary wheels only, so the target needs no compiler
"$python" -m venv "$root$venv"
"$root$venv/bin/python" -m pip install -q --upgrade pip
"$root$venv/bin/python" -m pip install -q --no-compile --only-binary :all: "$wheel"
if ! "$root$venv/bin/python" -I -c 'import ngfw._fastpath.engine' 2>"$build/import.log"; then
    echo "deploy/build-packages.sh: ngfw does not import in the package's virtualenv:" >&2
    cat "$build/import.log" >&2
    exit 1
fi
mkdir -p "$root/usr/share/doc/ngfw"
"$root$venv/bin/python" -m pip freeze --exclude-editable | sed "s|^ngfw @ .*|ngfw==$version|" \
    > "$root/usr/share/doc/ngfw/python-packages.txt"
"$root$venv/bin/python" -m pip uninstall -q -y pip setuptools >/dev/null 2>&1 || true
rm -f "$root$venv"/bin/activate* "$root$venv"/bin/Activate.ps1
find "$root$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
grep -rlI --null "$root" "$root$venv" | xargs -0 -r sed -i "s|$root||g"
if grep -rqI "$build" "$root$venv"; then
    echo "deploy/build-packages.sh: the build directory is still named in:" >&2
    grep -rlI "$build" "$root$venv" >&2
    exit 1
fi

# 3. the rest of the package
install -D -m 0644 deploy/systemd/ngfw-dataplane.service "$root/lib/systemd/system/ngfw-dataplane.service"
install -D -m 0644 deploy/systemd/ngfw-control.service "$root/lib/systemd/system/ngfw-control.service"
install -D -m 0644 deploy/logrotate/ngfw "$root/etc/logrotate.d/ngfw"
mkdir -p "$root/usr/bin"
ln -s "$venv/bin/ngfw" "$root/usr/bin/ngfw"
install -m 0644 docs/deploy.md "$root/usr/share/doc/ngfw/deploy.md"
install -D -m 0644 deploy/etc/dataplane.yaml "$root/usr/share/doc/ngfw/examples/dataplane.yaml"
install -D -m 0644 deploy/etc/control.yaml "$root/usr/share/doc/ngfw/examples/control.yaml"
install -D -m 0644 deploy/systemd/ngfw-dataplane.service.d/fail-open.conf "$root/usr/share/doc/ngfw/examples/fail-open.conf"
cat > "$root/usr/share/doc/ngfw/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngfw
Comment: /opt/ngfw/venv holds ngfw and, unmodified, the Python packages listed in
 python-packages.txt, each under its own licence (see its .dist-info directory).

Files: *
Copyright: ngfw maintainers
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
EOF
printf 'ngfw (%s-%s) bookworm; urgency=medium\n\n  * Built by deploy/build-packages.sh from %s.\n\n -- ngfw maintainers <maintainers@users.noreply.r-seed-369a0921.example>  %s\n' \
    "$version" "$revision" "$(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" "$(date -R)" \
    | gzip -9n > "$root/usr/share/doc/ngfw/changelog.Debian.gz"

# 4. control data: Depends from the ELF objects' NEEDED libraries (dpkg-shlibdeps), the interpreter,
# adduser (postinst). Nothing that builds or tests.
printf 'Source: ngfw\n\nPackage: ngfw\nArchitecture: any\n' > "$build/src/debian/control"
mapfile -t elfs < <(find "$root" -type f \( -name '*.so' -o -name '*.so.*' \) -exec sh -c 'head -c4 "$1" | grep -q ELF && echo "$1"' _ {} \;)
shlibs=$(cd "$build/src" && dpkg-shlibdeps -O --ignore-missing-info "${elfs[@]/#/-e}" 2>"$build/shlibdeps.log" \
         | sed -n 's/^shlibs:Depends=//p')
depends="python$pyver, adduser, $shlibs"
mkdir -p "$root/DEBIAN"
install -m 0755 deploy/deb/postinst deploy/deb/prerm deploy/deb/postrm "$root/DEBIAN/"
printf '/etc/logrotate.d/ngfw\n' > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version-$revision/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
    deploy/deb/control.in > "$root/DEBIAN/control"
deb="dist/ngfw_${version}-${revision}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "deploy/build-packages.sh: $deb ($(du -h "$deb" | cut -f1)), Depends: $depends"
