"""The arm64 Debian root of ``tools/arm64-check``: built once and cached, the binfmt_misc handler, mounts, chroot runs.

The root is Debian bookworm arm64 (``--variant=minbase`` + python3, python3-venv), made by debootstrap's first stage
(``--foreign``: downloads every package and unpacks the required ones) whose remaining packages are then unpacked on
the host with ``dpkg-deb``, instead of the emulated second stage (about 1 min instead of 4-6: no maintainer script
runs, which this root does not need: Python runs, the venv is made with ensurepip, pip uses the host's CA bundle).
It lives in ``$FASTSAM_ARM64_CACHE`` (default ``${XDG_CACHE_HOME:-~/.cache}/fastsam-onnx-ci``) as ``arm64-root``. pip
runs without a cache (its HTTP cache stayed empty under qemu, and the downloads take seconds: the emulated
installation is what takes time). ``/proc`` is mounted while the check runs and unmounted after;
``/sys`` never is: onnxruntime's CPU detection crashes under qemu when it can read ``/sys``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
PACKAGES = "python3,python3-venv"
#: bumped when the way the root is made changes: a cached root with another key is rebuilt
ROOT_KEY = f"1 {SUITE} minbase {PACKAGES}"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = Path("/usr/bin/qemu-aarch64-static")
CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # qemu-user-static's handler (flags OPF: F = fixed binary)
ENTRY = "qemu-aarch64"
HOST_CA = [Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pki/tls/certs/ca-bundle.crt")]


class Impossible(Exception):
    """The machine cannot run the check (exit status 2)."""


def cache_dir() -> Path:
    env = os.environ.get("FASTSAM_ARM64_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastsam-onnx-ci"


def log(msg: str) -> None:
    print(f"[arm64-check] {msg}", flush=True)


class Arm64Root:
    """Context manager: the ready root, binfmt handler and /proc mount; undoes what it did on exit."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.path = cache / "arm64-root"
        self.undo: list[tuple[str, object]] = []
        self.build_s: float | None = None  # seconds spent building the root (None: the cached one was used)

    # -- the machine ---------------------------------------------------------------------------------------------
    def check_machine(self) -> None:
        if os.geteuid() != 0:
            raise Impossible("needs root (debootstrap, chroot, mount, binfmt_misc): run it as root or with sudo")
        self.cache.mkdir(parents=True, exist_ok=True)
        self.lock = open(self.cache / "arm64-root.lock", "w")  # one check at a time uses the root and the handler
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another arm64-check ({self.cache / 'arm64-root.lock'})")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        if not QEMU.is_file():
            raise Impossible(f"no {QEMU}: apt-get install qemu-user-static debootstrap")
        if not (BINFMT / "register").exists():
            if not BINFMT.is_dir():
                raise Impossible(f"no {BINFMT}: this kernel has no binfmt_misc (aarch64 programs cannot run here)")
            r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True)
            if r.returncode != 0 or not (BINFMT / "register").exists():
                raise Impossible(f"binfmt_misc is not mounted and cannot be ({r.stderr.strip()}): "
                                 "in a container, start it with the host's binfmt_misc or --privileged")
            self.undo.append(("umount", BINFMT))
            log(f"mounted binfmt_misc on {BINFMT}")
        entry = BINFMT / ENTRY
        if not entry.exists():
            if not CONF.is_file():
                raise Impossible(f"no {CONF} (qemu-user-static's binfmt handler): apt-get install qemu-user-static")
            try:
                (BINFMT / "register").write_text(CONF.read_text().strip() + "\n")
            except OSError as e:
                raise Impossible(f"cannot register the aarch64 binfmt handler: {e}") from e
            self.undo.append(("unregister", entry))
            log(f"registered the aarch64 binfmt handler ({CONF})")
        text = entry.read_text()
        if not text.startswith("enabled"):
            raise Impossible(f"the aarch64 binfmt handler is disabled ({entry}): echo 1 > {entry}")
        self.interpreter = next(line.split()[1] for line in text.splitlines() if line.startswith("interpreter"))
        self.fixed = any(line.startswith("flags") and "F" in line.split(":", 1)[1] for line in text.splitlines())

    # -- the root ------------------------------------------------------------------------------------------------
    def ensure_root(self) -> None:
        marker = self.path / ".fastsam-root"
        if marker.is_file() and marker.read_text().strip() == ROOT_KEY:
            log(f"reusing the cached arm64 root {self.path}")
            return
        if shutil.which("debootstrap") is None:
            raise Impossible("no debootstrap: apt-get install debootstrap")
        t0 = time.perf_counter()
        tmp = self.cache / "arm64-root.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        log(f"building the arm64 root in {self.path} (debootstrap --foreign, packages unpacked on the host)")
        run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(tmp), MIRROR],
            quiet=True)
        archives = sorted((tmp / "var/cache/apt/archives").glob("*.deb"))
        for deb in archives:  # what the second stage would dpkg --unpack, without running maintainer scripts
            data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(tmp)], input=data, check=True)
            deb.unlink()
        for name in ("passwd", "group"):  # base-passwd's postinst would write them
            shutil.copy(tmp / f"usr/share/base-passwd/{name}.master", tmp / "etc" / name)
        for d in ("proc", "sys", "dev", "tmp", "root", "opt"):
            if (tmp / d).is_symlink():  # the first stage links proc -> /proc: mounting there would hit the host's
                (tmp / d).unlink()
            (tmp / d).mkdir(parents=True, exist_ok=True)
        os.chmod(tmp / "tmp", 0o1777)
        for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)):
            node = tmp / "dev" / name
            if not node.exists():
                os.mknod(node, 0o20666, os.makedev(1, minor))
            os.chmod(node, 0o666)
        shutil.rmtree(self.path, ignore_errors=True)
        tmp.rename(self.path)
        marker.write_text(ROOT_KEY + "\n")
        self.build_s = time.perf_counter() - t0
        log(f"arm64 root built in {self.build_s:.0f} s ({len(archives)} packages unpacked on the host)")

    def prepare(self) -> None:
        """Per run: the host's resolver and CA bundle, /proc, the interpreter when the handler is not fixed."""
        shutil.copy("/etc/resolv.conf", self.path / "etc/resolv.conf")
        ca = next((p for p in HOST_CA if p.is_file()), None)
        if ca is None:
            raise Impossible("no CA bundle on the host (/etc/ssl/certs/ca-certificates.crt): apt-get install ca-certificates")
        shutil.copy(ca, self.path / "etc/host-ca.pem")
        if not self.fixed:  # a handler without F opens its interpreter inside the root
            dest = self.path / self.interpreter.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(QEMU, dest)
        proc = self.path / "proc"
        if proc.is_symlink() or not proc.is_dir():
            raise Impossible(f"{proc} is not a directory: remove {self.path} to rebuild the root")
        if not os.path.ismount(proc):
            subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
            self.undo.append(("umount", proc))
        sys_dir = self.path / "sys"
        if os.path.ismount(sys_dir):
            raise Impossible(f"{sys_dir} is mounted: unmount it (onnxruntime's CPU detection crashes under qemu with /sys)")
        r = self.run(["/usr/bin/python3", "-c", "import platform; print(platform.machine())"], capture=True)
        if r.stdout.strip() != "aarch64":
            raise Impossible(f"the root's python3 does not run as aarch64: {r.stdout.strip()!r} {r.stderr.strip()[-300:]}")

    def run(self, cmd: list[str], capture: bool = False, check: bool = False, timeout: float = 900, env=None, **kw):
        """Run ``cmd`` inside the root with a clean environment; ``capture``: return its text output."""
        return subprocess.run(self.argv(cmd, env), capture_output=capture, text=True, check=check, timeout=timeout, **kw)

    def argv(self, cmd: list[str], env: dict | None = None) -> list[str]:
        base = {"HOME": "/root", "LANG": "C.UTF-8", "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
                "PIP_CERT": "/etc/host-ca.pem", "SSL_CERT_FILE": "/etc/host-ca.pem", "PIP_NO_CACHE_DIR": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "", "FASTSAM_ONNX_OFFLINE": "1",
                "XDG_CACHE_HOME": "/root/.cache"}
        base.update(env or {})
        return ["chroot", str(self.path), "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in base.items() if v], *cmd]

    def __enter__(self) -> "Arm64Root":
        return self

    def __exit__(self, *exc) -> None:
        for what, path in reversed(self.undo):
            if what == "umount":
                r = subprocess.run(["umount", str(path)], capture_output=True, text=True)
                if r.returncode:
                    subprocess.run(["umount", "-l", str(path)], capture_output=True)
            elif what == "unregister":
                try:
                    Path(path).write_text("-1\n")
                except OSError as e:
                    log(f"could not remove the binfmt handler {path}: {e}")
        self.undo.clear()


def run(cmd: list[str], quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run a host command; on failure print its output and raise."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise subprocess.CalledProcessError(r.returncode, cmd)
    if not quiet:
        sys.stdout.write(r.stdout)
    return r
