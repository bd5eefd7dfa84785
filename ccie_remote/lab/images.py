"""The lab's one host image, built once and then found again by a hash of what it is built from.

The image's tag holds a digest of its build inputs (the Dockerfile, every file beside it and
the base image's id), so a changed input builds a new image and an unchanged one is reused at
once. The base is ``debian:bookworm-slim`` where the engine has it or can pull it; where no
registry answers, it is a bookworm made by ``debootstrap --variant=minbase`` with every package
the lab needs, imported with ``docker import`` and tagged by a digest of that package list.
Set ``CCIE_LAB_PULL=0`` to skip the pull attempt. Images outlive ``down``: they are a cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ccie_remote.errors import LabError
from ccie_remote.lab.docker import docker, image_exists, last_line

log = logging.getLogger(__name__)

FILES = Path(__file__).parent / "files"
UPSTREAM_BASE = "debian:bookworm-slim"
BASE_REPOSITORY = "ccie-remote-lab-base"
HOST_REPOSITORY = "ccie-remote-lab"
IMAGE_LABEL = "ccie-remote.lab-image"
SUITE = "bookworm"

# What a debootstrapped base needs no longer: caches, documentation, and host keys, which
# each container makes for itself at start.
PRUNED = [
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*_*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/locale/*",
    "usr/share/info/*",
    "etc/ssh/ssh_host_*",
]


def ensure_host_image() -> str:
    """Return the tag of the lab's host image, building it (and its base) when missing."""
    with build_lock():
        base = ensure_base_image()
        base_id = docker("image", "inspect", "--format", "{{.Id}}", base).stdout.strip()
        tag = f"{HOST_REPOSITORY}:{inputs_digest(FILES, base_id)}"
        if image_exists(tag):
            log.debug("host image %s is cached", tag)
            return tag

        log.info("building the lab host image %s", tag)
        build_host_image(tag, base)
        return tag


def ensure_base_image() -> str:
    """Return a bookworm base image: upstream where it exists or pulls, else debootstrapped."""
    if image_exists(UPSTREAM_BASE):
        return UPSTREAM_BASE
    tag = f"{BASE_REPOSITORY}:{SUITE}-{packages_digest()}"
    if image_exists(tag):
        return tag
    if os.environ.get("CCIE_LAB_PULL", "1") != "0" and pulled(UPSTREAM_BASE):
        return UPSTREAM_BASE

    log.info("no registry answers: debootstrapping a %s base (a few minutes, once)", SUITE)
    debootstrap_base(tag)
    return tag


def inputs_digest(folder: Path, base_id: str) -> str:
    """A short digest of every file under FOLDER (path, executable bit, content) and the base."""
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"\0{relative}\0{executable}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def packages() -> list[str]:
    """The Debian packages every lab host needs, from files/packages.txt."""
    text = (FILES / "packages.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def packages_digest() -> str:
    """A short digest of what a debootstrapped base is made from."""
    made_from = f"{SUITE} minbase " + " ".join(packages())
    return hashlib.sha256(made_from.encode()).hexdigest()[:16]


def pulled(image: str) -> bool:
    """Try to pull IMAGE once; a registry that does not answer is not an error."""
    result = docker("pull", "--quiet", image, check=False, timeout=180)
    if result.returncode != 0:
        log.debug("pull %s failed: %s", image, last_line(result.stderr))
    return result.returncode == 0


def debootstrap_base(tag: str) -> None:
    """Make a minimal bookworm with the lab's packages and import it as TAG."""
    if shutil.which("debootstrap") is None:
        raise LabError(
            f"no base image: {UPSTREAM_BASE} cannot be pulled and debootstrap is not installed"
            " (apt-get install debootstrap)"
        )
    if os.geteuid() != 0:
        raise LabError(f"no base image: {UPSTREAM_BASE} cannot be pulled; debootstrap needs root")

    workdir = Path(tempfile.mkdtemp(prefix="ccie-lab-base-", dir="/var/tmp"))
    try:
        root = workdir / "root"
        run_debootstrap(root, workdir / "debootstrap.log")
        prune(root)
        import_root(root, tag)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_debootstrap(root: Path, log_path: Path) -> None:
    """debootstrap with Debian's default mirror, its output kept in LOG_PATH."""
    command = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(packages()),
        SUITE,
        str(root),
    ]
    with log_path.open("w", encoding="utf-8") as output:
        result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = last_line(log_path.read_text(encoding="utf-8", errors="replace"))
        raise LabError(f"debootstrap {SUITE} exited {result.returncode}: {tail}")


def prune(root: Path) -> None:
    """Remove caches, documentation and baked host keys from a debootstrapped tree."""
    for pattern in PRUNED:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def import_root(root: Path, tag: str) -> None:
    """`tar` the tree into `docker import` as TAG."""
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-cf", "-", "."],
        stdout=subprocess.PIPE,
    )
    imported = subprocess.run(
        ["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", tag],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    if tar.stdout is not None:
        tar.stdout.close()
    tar_status = tar.wait()
    if tar_status != 0 or imported.returncode != 0:
        raise LabError(
            f"importing the debootstrapped base as {tag} failed: tar exited {tar_status},"
            f" docker import: {last_line(imported.stderr)}"
        )


def build_host_image(tag: str, base: str) -> None:
    """`docker build` the host image from files/ on top of BASE."""
    result = docker(
        "build",
        "--build-arg",
        f"BASE={base}",
        "--label",
        f"{IMAGE_LABEL}=host",
        "--tag",
        tag,
        str(FILES),
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        reason = last_line(result.stderr or result.stdout)
        raise LabError(f"building the lab host image {tag} failed: {reason}")


@contextmanager
def build_lock() -> Iterator[None]:
    """Hold a machine-wide lock so that labs coming up at once build each image only once."""
    path = Path(tempfile.gettempdir()) / "ccie-remote-lab-images.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
