"""Files in and out. Every file tidu reads or writes goes through here."""
from .files import atomic_write, read_json, write_json
from .onnx import OnnxExportError, export_onnx
from .safetensors import CheckpointError, load, save

__all__ = ["save", "load", "CheckpointError", "atomic_write", "read_json", "write_json", "export_onnx",
           "OnnxExportError"]
