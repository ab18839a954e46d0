"""The shipped digit classifier: the accuracy score of the digits models (stands in for CLIP).

Multinomial logistic regression on the 256 pixels of a 16x16 grey image, trained with
scikit-learn on the training split of the digits in all four handwritings (plain and the
three users' styles), so that a personalized digit counts as the digit it is. Stored as JSON
(weights and bias as lists; no pickle) and evaluated in NumPy, so scoring needs neither
scikit-learn nor torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import InputError
from edgediff.personalize.data import STYLES, apply_style, load_digits_16, to_gray

CLASSIFIER_FILE = "digits-classifier.json"


class ClassifierError(InputError):
    """A classifier file is missing or malformed."""


@dataclass(frozen=True, eq=False)
class DigitClassifier:
    """``p(digit | image) = softmax(W x + b)`` over the flattened [0, 1] grey pixels ``x``."""

    weight: np.ndarray  # (10, side * side)
    bias: np.ndarray  # (10,)
    side: int
    test_accuracy: float  # on the held-out split, all four handwritings

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """``images``: uint8 RGB ``(n, H, W, 3)`` or grey ``(n, H, W)`` in [0, 1] -> ``(n, 10)``."""
        images = np.asarray(images)
        gray = to_gray(images) if images.ndim == 4 else images.astype(np.float32)
        if gray.shape[1:] != (self.side, self.side):
            raise ClassifierError(f"classifier expects {self.side}x{self.side} images, got {gray.shape[1:]}")
        logits = gray.reshape(len(gray), -1) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.probabilities(images).argmax(axis=1)

    def save(self, path: str | Path) -> None:
        data = {
            "format": "edgediff-digit-classifier",
            "side": self.side,
            "test_accuracy": self.test_accuracy,
            "weight": np.round(self.weight, 6).tolist(),
            "bias": np.round(self.bias, 6).tolist(),
        }
        Path(path).write_text(json.dumps(data) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DigitClassifier:
        try:
            data = json.loads(Path(path).read_text())
            weight = np.asarray(data["weight"], dtype=np.float64)
            bias = np.asarray(data["bias"], dtype=np.float64)
            side = int(data["side"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ClassifierError(f"cannot read digit classifier {str(path)!r}: {err}") from None
        if weight.shape != (10, side * side) or bias.shape != (10,):
            raise ClassifierError(f"digit classifier {str(path)!r} has shapes {weight.shape}, {bias.shape}")
        return cls(weight, bias, side, float(data.get("test_accuracy", float("nan"))))


def shipped_classifier(model_source: str | Path | None = None) -> DigitClassifier:
    """The classifier shipped with the embedded weights, or the one that ``train-tiny`` wrote
    beside ``model_source`` when that is a model folder of a ``train-tiny`` output."""
    from edgediff.runtime.tiny import WEIGHTS_DIR

    if model_source is not None and (Path(model_source).parent / CLASSIFIER_FILE).is_file():
        return DigitClassifier.load(Path(model_source).parent / CLASSIFIER_FILE)
    return DigitClassifier.load(WEIGHTS_DIR / CLASSIFIER_FILE)


def train_classifier(seed: int = 0, test_fraction: float = 0.25, C: float = 0.5) -> DigitClassifier:
    """Fit the classifier on a seeded split of the digits (plain + the three styles)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    images, labels = load_digits_16()
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )

    def all_styles(x, y):
        return np.concatenate([x] + [apply_style(x, s) for s in STYLES]), np.tile(y, 1 + len(STYLES))

    train_x, train_y = all_styles(train_x, train_y)
    test_x, test_y = all_styles(test_x, test_y)
    model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    model.fit(train_x.reshape(len(train_x), -1), train_y)
    accuracy = float(model.score(test_x.reshape(len(test_x), -1), test_y))
    return DigitClassifier(
        model.coef_.astype(np.float64), model.intercept_.astype(np.float64), images.shape[1], accuracy
    )
