"""Regularization terms of `nsl.keras.RegularizedModel`, which combine.

Each term adds one scalar to the base model's labeled loss and reports it as
a metric: `AdversarialTerm` (FGSM/PGD neighbours, NSL 1.4's adversarial
regularization), `VirtualAdversarialTerm` and `EntropyTerm` (semi-supervised
VAT), `GraphTerm` (NSL 1.4's graph regularization), `TradesTerm` (TRADES:
the KL from the clean prediction at a PGD neighbour; `trades_config` gives
its settings). `Term` is the interface.
"""

from neural_structured_learning.keras.terms._term import Term
from neural_structured_learning.keras.terms.adversarial import AdversarialTerm
from neural_structured_learning.keras.terms.graph import GraphTerm
from neural_structured_learning.keras.terms.trades import TradesTerm
from neural_structured_learning.keras.terms.trades import trades_config
from neural_structured_learning.keras.terms.vat import EntropyTerm
from neural_structured_learning.keras.terms.vat import VirtualAdversarialTerm

__all__ = ["AdversarialTerm", "EntropyTerm", "GraphTerm", "Term",
           "TradesTerm", "VirtualAdversarialTerm", "trades_config"]
