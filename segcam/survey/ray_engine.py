"""The Ray engine of the batch pipeline (``segcam explain --engine ray``).

Ray Data streams the image paths through ``map_batches`` on a fixed pool of
actors; each actor builds the model once (from :attr:`segcam.models.zoo.ZooModel.source`,
plain data, never a pickled network), explains its images with the same
:func:`segcam.survey.batch.explain_each` loop as the local engine (the next image is
computed while the last one is written) and writes the files straight into the
output folder. The
driver receives one small row per image (its manifest record and summary
row) and journals it in the :class:`segcam.survey.batch.RunFolder`, so the output
layout, ``manifest.json``, ``summary.csv``, the lock and the resume of a killed
job are those of the local engine.

On a multi-node cluster the image paths and ``--out`` must be visible at the
same path on every node (a shared file system: NFS, a mounted bucket); a
worker that dies mid-job is replaced by Ray and its images are explained again
(outputs are written atomically, so a repeat only overwrites identical files).

Nothing here is imported unless ``--engine ray`` is chosen.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from segcam.data.images import is_uri
from segcam.survey.batch import BatchSummary, ExplainJob, RunFolder, explain_each
from segcam.utils.progress import Progress

__all__ = ["RayOptions", "RayUnavailableError", "ray_loop"]

INSTALL_HINT = 'pip install "segcam[ray]"'


@dataclass(frozen=True)
class RayOptions:
    """How ``--engine ray`` runs.

    Attributes:
        address: ``None`` starts a local Ray; ``auto`` joins the running cluster; ``ray://HOST:PORT`` a remote one.
        workers: Actors (each loads the model once).
        batch_size: Images per ``map_batches`` call.
        threads: CPU threads per actor (Paddle's kernels); also the CPUs each actor requests.
        gpus: GPUs each actor requests (0 on CPU machines).
    """

    address: str | None = None
    workers: int = 2
    batch_size: int = 4
    threads: int = 1
    gpus: float = 0.0


class RayUnavailableError(ImportError):
    """``--engine ray`` was chosen but Ray Data is not installed."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(f"--engine ray needs Ray Data ({exc}); install it with {INSTALL_HINT}") from None
    return ray


def job_spec(job: Any) -> dict[str, Any]:
    """The job as plain data for the actors: every field but the model, which travels as its ``source``.

    Raises:
        ValueError: A model without a ``source`` (a bare network), which a worker cannot rebuild.
    """
    source = getattr(job.model, "source", None)
    if not source:
        raise ValueError("--engine ray needs a model built by segcam.create_model or segcam.load_paddleseg "
                         "(workers rebuild it from its name/config and weights)")
    spec = job.spec() if hasattr(job, "spec") else {f.name: getattr(job, f.name) for f in fields(job)
                                                    if f.name not in ("model", "on_step")}
    return {"model": dict(source), "job": spec}


class _Explainer:
    """A Ray actor: builds the model once, then explains batches of ``{path, name}`` rows."""

    def __init__(self, spec: dict[str, Any], out: str, threads: int) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import paddle

        from segcam.models.zoo import rebuild_model

        paddle.base.core.set_num_threads(threads)
        model = rebuild_model(spec["model"])
        if spec["job"].get("kind") == "survey":
            from segcam.survey.survey import SurveyJob

            self.job: Any = SurveyJob.from_spec(model, spec["job"])
        else:
            self.job = ExplainJob(model=model, **spec["job"])
        self.out = Path(out)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        names, records, rows = [], [], []

        def on_done(name: str, rec: dict[str, Any], row: dict[str, Any]) -> None:
            names.append(name)
            records.append(json.dumps(rec, default=str))
            rows.append(json.dumps(row, default=str))

        todo = [(str(p) if is_uri(str(p)) else Path(str(p)), str(n)) for p, n in zip(batch["path"], batch["name"])]
        explain_each(self.job, todo, self.out, on_done)  # an OSError fails the task (Ray retries it)
        return {"name": names, "record": records, "row": rows}


def _quiet_ray() -> None:
    """Keep Ray's notices (token authentication, actor restarts, progress bars, execution summaries) off the terminal.

    They read like errors to a surveyor and say nothing about the photos. A user's own settings win:
    ``RAY_BACKEND_LOG_LEVEL=info`` brings the C++ core's lines back.
    """
    import logging

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    for name in ("ray", "ray.data", "ray._private"):
        logging.getLogger(name).setLevel(logging.ERROR)


def ray_loop(job: Any, todo: list[tuple[Path, str]], run: RunFolder, summary: BatchSummary, out: Path,
             progress: Progress, warn: Callable[[str], None] | None = None, *, opts: RayOptions) -> None:
    """Explain ``todo`` on Ray and journal each finished image in ``run`` as its row streams back.

    An engine of :func:`segcam.survey.batch.run_explain`: pass ``functools.partial(ray_loop, opts=...)``.

    Starts a local Ray (``opts.address`` None) or joins a cluster, and leaves a Ray it did not start
    running. Memory stays bounded whatever the survey size: Ray Data streams blocks with backpressure and
    only the small per-image rows come back to the driver.

    Raises:
        RayUnavailableError: Ray Data is not installed.
        ValueError: Bad options or a model the workers cannot rebuild.
    """
    if opts.workers < 1 or opts.batch_size < 1 or opts.threads < 1:
        raise ValueError(f"--workers, --batch-size and --threads must be >= 1, got {asdict(opts)}")
    spec = job_spec(job)
    if not todo:
        return
    ray = _import_ray()

    started = False
    if not ray.is_initialized():
        _quiet_ray()
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": True, "logging_level": "error"}
        if opts.address is None:
            kwargs["num_cpus"] = max(os.cpu_count() or 1, opts.workers * opts.threads)
        if warn is not None:  # the next 10-20 s are Ray's start-up and the actors loading the model
            where = "a local Ray" if opts.address is None else f"Ray at {opts.address}"
            warn(f"starting {where} with {opts.workers} workers (Ray's own start-up and each worker loading the model: "
                 "about 15 s on a 2-core machine, once per run)")
        ray.init(address=opts.address, **kwargs)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the caller's progress of images instead of Ray's per-operator bars
        ctx.print_on_execution_start = False
        ds = ray.data.from_items([{"path": p if isinstance(p, str) else str(p.resolve()), "name": n} for p, n in todo],
                                 override_num_blocks=max(1, min(len(todo), 4 * opts.workers)))
        ds = ds.map_batches(_Explainer, fn_constructor_kwargs={"spec": spec, "out": str(out.resolve()),
                                                               "threads": opts.threads},
                            batch_size=opts.batch_size, compute=ray.data.ActorPoolStrategy(size=opts.workers),
                            num_cpus=opts.threads, num_gpus=opts.gpus or None, batch_format="numpy")
        for row in ds.iter_rows():
            name = str(row["name"])
            rec, srow = json.loads(row["record"]), json.loads(row["row"])
            run.add(name, rec, srow)
            if rec.get("status") == "ok":
                summary.done += 1
            elif warn is not None:
                warn(f"error: {rec.get('error')}")
            progress.advance()
    finally:
        if started:
            ray.shutdown()
