"""Loading and checking a model folder (see ``contract`` for what it holds and ``docs/models.md``)."""
from __future__ import annotations

import hashlib
import json
import pathlib
from functools import cached_property

import numpy as np

from edgecodec.entropy import CdfTables
from edgecodec.errors import EdgecodecError, ModelError
from edgecodec.models import contract
from edgecodec.models.context import CheckerboardContext
from edgecodec.models.entropy_model import EntropyModel
from edgecodec.models.hyper import HyperSynthesis


def default_model_dir() -> pathlib.Path:
    """The models shipped with the package (installed as ``edgecodec.zoo``), else the source tree's ``models/``."""
    try:
        import importlib.resources

        path = pathlib.Path(str(importlib.resources.files("edgecodec.zoo")))
        if (path / contract.MANIFEST).exists():
            return path
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    return pathlib.Path(__file__).resolve().parents[2] / "models"


class ModelBundle:
    """A model folder: encoders per quality, decoder, hyper-synthesis, CDF tables, and its identity."""

    def __init__(self, directory: pathlib.Path, manifest: dict, hyper_threads: int = 2):
        self.dir = directory
        self.manifest = manifest
        self.hyper_threads = hyper_threads
        self._models = {}
        self._verified: set[str] = set()  # optional files checked against the manifest's SHA-256

    @classmethod
    def load(cls, directory=None, verify: bool = True, hyper_threads: int = 2) -> "ModelBundle":
        """``hyper_threads``: threads of the hyper-synthesis convolutions (give a codec's own count, so
        that ``threads=1`` really means one thread)."""
        directory = pathlib.Path(directory) if directory is not None else default_model_dir()
        path = directory / contract.MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"no model in {directory} ({contract.MANIFEST} missing)") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"unreadable {path}: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != contract.MANIFEST_FORMAT:
            raise ModelError(f"{path}: unsupported manifest format {manifest.get('format')!r}"
                             if isinstance(manifest, dict) else f"{path}: not a manifest")
        try:
            qualities = manifest["qualities"]
            if not qualities or [q["quality"] for q in qualities] != list(range(len(qualities))):
                raise ModelError(f"{path}: qualities must be numbered 0..N-1")
            for name in cls._file_names(manifest):
                if not (directory / name).is_file():
                    raise ModelError(f"model file {directory / name} is missing")
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{path}: malformed manifest ({exc})") from None
        bundle = cls(directory, manifest, hyper_threads)
        if verify:
            expected = manifest.get("model_id", "")
            actual = bundle.compute_id().hex()
            if expected != actual:
                raise ModelError(f"model files in {directory} do not match their manifest "
                                 f"(id {actual}, manifest says {expected or 'nothing'})")
        return bundle

    @staticmethod
    def _file_names(manifest) -> list[str]:
        names = [q["encoder"] for q in manifest["qualities"]] + list(manifest.get("hyper_convs", []))
        return sorted(names + [contract.DECODER, contract.FLOAT_ENCODER, contract.HYPER,
                               contract.CDF_Y, contract.CDF_Z])

    def compute_id(self) -> bytes:
        """First 8 bytes of SHA-256 over every model file's name and contents, in name order."""
        h = hashlib.sha256()
        for name in self._file_names(self.manifest):
            h.update(name.encode() + b"\0")
            h.update((self.dir / name).read_bytes())
        return h.digest()[:8]

    @cached_property
    def model_id(self) -> bytes:
        return bytes.fromhex(self.manifest["model_id"]) if "model_id" in self.manifest else self.compute_id()

    @property
    def qualities(self) -> list[int]:
        return [q["quality"] for q in self.manifest["qualities"]]

    def _npz(self, name):
        try:
            with np.load(self.dir / name, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {self.dir / name}: {exc}") from None

    @cached_property
    def _hyper_arrays(self) -> dict:
        return self._npz(contract.HYPER)

    @cached_property
    def hyper(self) -> HyperSynthesis:
        """The integer hyper-synthesis: its convolutions on the int8 kernel where it runs, else on TFLite
        when the folder carries them, else on numpy."""
        names = self.manifest.get("hyper_convs") or []
        fallback = (lambda: [self._exact_conv(name) for name in names]) if names else None
        return HyperSynthesis(self._hyper_arrays, None, self.hyper_threads, fallback)

    @cached_property
    def context(self) -> CheckerboardContext | None:
        """The checkerboard context model, or None for a model coded in one pass."""
        if "ctx_w" not in self._hyper_arrays:
            return None
        if not self.hyper.has_mean:
            raise ModelError(f"{contract.HYPER}: a checkerboard context needs the mean head")
        return CheckerboardContext(self._hyper_arrays, self.hyper.latent_channels, self.hyper.qualities)

    def entropy_model(self, threads: int = 1) -> EntropyModel:
        """The latents' entropy model (hyper-synthesis, context, tables), its products on ``threads``."""
        return EntropyModel(self.hyper, self.context, self.cdf_y, self.cdf_z, threads)

    def _exact_conv(self, name: str):
        model = self.tflite(name, self.hyper_threads)

        def conv(a):
            return model.run(np.asarray(a, np.float32)[None])[0][0]

        return conv

    @cached_property
    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(gain, inverse gain) per quality and latent channel, float32."""
        arrays = self._hyper_arrays
        try:
            return arrays["gain"].astype(np.float32), arrays["inv_gain"].astype(np.float32)
        except KeyError as exc:
            raise ModelError(f"{contract.HYPER} lacks {exc}") from None

    def _tables(self, name) -> CdfTables:
        try:
            return CdfTables.load(self.dir / name)
        except EdgecodecError as exc:
            raise ModelError(f"{self.dir / name}: {exc}") from None

    @cached_property
    def cdf_y(self) -> CdfTables:
        tables = self._tables(contract.CDF_Y)
        if tables.cdf.shape[0] != self.hyper.tables:
            raise ModelError(f"{self.dir / contract.CDF_Y}: {tables.cdf.shape[0]} tables, the hyper-synthesis "
                             f"addresses {self.hyper.tables}")
        return tables

    @cached_property
    def cdf_z(self) -> CdfTables:
        return self._tables(contract.CDF_Z)

    @property
    def has_live_decoder(self) -> bool:
        return isinstance(self.manifest.get("live_decoder"), dict)

    @property
    def has_fast_encoder(self) -> bool:
        return isinstance(self.manifest.get("fast_encoder"), dict)

    def decoder(self, kind: str = "full", threads: int = 2):
        """The synthesis: ``full`` (decoder.tflite) or the faster ``live`` one, whose file is checked against
        the SHA-256 the manifest gives, since the model id does not cover it; in fixed order
        (``fixed_order_synthesis``)."""
        if kind == "full":
            return self.fixed_order_synthesis(contract.DECODER, threads)
        if kind != "live":
            raise ModelError(f"decoder must be one of {', '.join(contract.DECODERS)}, not {kind!r}")
        entry = self.manifest.get("live_decoder")
        if not isinstance(entry, dict):
            raise ModelError(f"the model in {self.dir} has no live decoder (tools/export_live.py adds one)")
        return self._optional(entry, contract.LIVE_DECODER, "live decoder", threads, runner=self.fixed_order_synthesis)

    def fast_encoder(self, quality: int | None, threads: int = 2):
        """The fast analysis: its int8 model for ``quality``, or (``None``) its float one, checked
        against the SHA-256 the manifest gives."""
        entry = self.manifest.get("fast_encoder")
        if not isinstance(entry, dict):
            raise ModelError(f"the model in {self.dir} has no fast encoder (tools/export_fast.py adds one)")
        try:
            if quality is None:
                return self._optional(entry["float"], contract.FAST_ENCODER, "fast encoder", threads)
            file_entry = entry["int8"][quality]
            if file_entry["quality"] != quality:
                raise KeyError(quality)
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"{self.dir / contract.MANIFEST}: the fast encoder lacks its "
                             f"{'float' if quality is None else f'quality {quality}'} model") from None
        return self._optional(file_entry, contract.fast_encoder_name(quality), "fast encoder", threads,
                              runner=self.int8_analysis)

    def _optional(self, entry, default_name: str, what: str, threads: int, runner=None):
        """An optional model file named by a manifest entry ``{"file", "sha256"}``: outside the model
        id, so its bytes are checked against the entry's SHA-256 when first loaded."""
        name = entry.get("file", default_name) if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ModelError(f"{self.dir / contract.MANIFEST}: bad {what} file name {name!r}")
        if name not in self._verified:
            try:
                digest = hashlib.sha256((self.dir / name).read_bytes()).hexdigest()
            except OSError as exc:
                raise ModelError(f"cannot read the {what} {self.dir / name}: {exc.strerror}") from None
            if digest != entry.get("sha256"):
                raise ModelError(f"{self.dir / name} does not match the SHA-256 in its manifest")
            self._verified.add(name)
        return (runner or self.tflite)(name, threads)

    def tflite(self, name: str, threads: int, delegate: str | None = None):
        from edgecodec.models.interpreter import TFLiteModel

        key = (name, threads, delegate)
        if key not in self._models:
            self._models[key] = TFLiteModel(self.dir / name, threads, delegate)
        return self._models[key]

    def int8_analysis(self, name: str, threads: int):
        """An int8 encoder on the exact integer kernel of ``edgecodec.models.analysis`` (the same bytes on
        every CPU), or on LiteRT where that kernel cannot run it."""
        from edgecodec.models import analysis

        key = ("int8", name, threads)
        if key not in self._models:
            self._models[key] = analysis.load(self.dir / name, threads)
        return self._models[key]

    def fixed_order_synthesis(self, name: str, threads: int):
        """A float synthesis in the fixed order of ``edgecodec.models.synthesis`` (the same pixels on every
        CPU), or on LiteRT where that cannot run it."""
        from edgecodec.models import synthesis

        key = ("f32", name, threads)
        if key not in self._models:
            self._models[key] = synthesis.load(self.dir / name, threads)
        return self._models[key]

    def fixed_encoder_sizes(self, quality: int) -> list[tuple[int, int]]:
        """The (height, width) of the fixed-shape int8 encoders the folder has for ``quality``."""
        entries = self.manifest.get("fixed_encoders")
        return [(e["height"], e["width"]) for e in entries if isinstance(e, dict) and e.get("quality") == quality] \
            if isinstance(entries, list) else []

    def fixed_encoder(self, quality: int, size: tuple[int, int], threads: int = 2) -> str | None:
        """The folder's fixed-shape int8 encoder for ``quality`` at a padded ``size`` (height, width), its
        SHA-256 checked once, by file name; None where it has none."""
        if tuple(size) not in self.fixed_encoder_sizes(quality):
            return None
        entry = next(e for e in self.manifest["fixed_encoders"]
                     if e.get("quality") == quality and (e["height"], e["width"]) == tuple(size))
        name = contract.fixed_encoder_name(quality, size[1], size[0])
        self._optional(entry, name, "fixed-shape encoder", threads)  # checks its SHA-256 once
        return entry.get("file", name)

    def encoder(self, quality: int, threads: int = 2, precision: str = "int8", analysis: str = "full",
                size: tuple[int, int] | None = None, delegate: str | None = None):
        """The analysis network that encodes ``quality``: int8 (one model per quality, its gain folded in)
        or float (one model for all, the caller applies the gain), of the full or the fast analysis. Int8
        encoders run on the exact integer kernel (``int8_analysis``), except with a ``delegate`` (a TFLite
        delegate library, e.g. an Edge TPU's) that loads: that runs the folder's fixed-shape encoder of
        the padded frame's ``size`` (height, width) where it has one (the same latents; accelerators
        compile only static shapes)."""
        if analysis == "fast":
            return self.fast_encoder(quality if precision == "int8" else None, threads)
        if precision == "float":
            return self.tflite(contract.FLOAT_ENCODER, threads)
        name = self.manifest["qualities"][quality]["encoder"]
        if delegate:
            from edgecodec.models.interpreter import load_delegate

            if load_delegate(delegate) is not None:  # else warned once, and the CPU runs it as below
                fixed = self.fixed_encoder(quality, size, threads) if size is not None else None
                return self.tflite(fixed or name, threads, delegate)
        return self.int8_analysis(name, threads)
