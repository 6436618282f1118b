"""The saved adapter folder, one room: its metadata (``meta.py``), writing it (``save.py``), reading it and loading a
one-task adapter (``load.py``), folders written by the plain libraries (``interop.py``), the model card (``cards.py``)
and the Hub (``hub.py``). Every file name lives in ``backends/files.py``; a multi-task folder is rebuilt by
``multitask/``. Nothing here imports training or serving."""

from ..backends.files import KIT_FILE
from .hub import push_to_hub, resolve_adapter
from .load import check_compatible, check_mergeable, folder_meta, load_folder, merge_adapter, remove_adapter
from .meta import AdapterMeta, attach_meta, meta_of
from .save import PLAIN_LIBRARY_HINT, check_output_dir, folder_size, save_adapter


__all__ = [
    "KIT_FILE",
    "PLAIN_LIBRARY_HINT",
    "AdapterMeta",
    "attach_meta",
    "check_compatible",
    "check_mergeable",
    "check_output_dir",
    "folder_meta",
    "folder_size",
    "load_folder",
    "merge_adapter",
    "meta_of",
    "push_to_hub",
    "remove_adapter",
    "resolve_adapter",
    "save_adapter",
]
