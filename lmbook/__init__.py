"""lmbook: the companion package of the lmbook textbook on large language models.

Every chapter imports its models, tokenizers, data loaders, trainer and views from
here, so that the code shown in the book is the code that is tested.
"""

from lmbook.data import load_text, train_val_split
from lmbook.utils import get_device, set_seed

__version__ = "0.1.0"

__all__ = ["get_device", "load_text", "set_seed", "train_val_split", "__version__"]
