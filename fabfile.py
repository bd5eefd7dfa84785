"""Entry point for `fab`: exposes the ccie-remote task collection, nothing else."""

from ccie_remote.tasks import ns  # noqa: F401
