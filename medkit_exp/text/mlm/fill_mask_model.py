"""`FillMaskModel`: a masked language model saved by ``hf_mlm`` as an MLflow pyfunc model.

Input: texts holding the tokenizer's mask token (``[MASK]`` for BERT), as a list of str or a
DataFrame with a ``text`` column. Output: a DataFrame with, for each mask token of each text,
its ``top_k`` most likely tokens: ``text_index``, ``mask_index`` (which mask of the text),
``rank``, ``token`` and ``score`` (probability). The HF folder inside the model (artifact
``hf_model``) is what ``models:/`` URIs resolve to when another run starts from this model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

ARTIFACT_KEY = "hf_model"
EXAMPLE_TEXTS = ["The patient was diagnosed with [MASK] cancer."]


class FillMaskModel(PythonModel):
    """Pyfunc wrapper of a HF masked language model; ``model_config``: ``top_k`` (default 5)."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch
        from transformers import AutoModelForMaskedLM

        from medkit_exp.text.hf_model import load_fast_tokenizer, quiet_transformers

        quiet_transformers()
        folder = context.artifacts[ARTIFACT_KEY]
        self.tokenizer = load_fast_tokenizer(folder)
        self.model = AutoModelForMaskedLM.from_pretrained(folder).eval()
        self.top_k = int((context.model_config or {}).get("top_k", 5))
        self._torch = torch

    def predict(self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        texts = list(model_input.iloc[:, 0] if isinstance(model_input, pd.DataFrame) else model_input)
        rows = []
        for text_index, text in enumerate(texts):
            encoded = self.tokenizer(str(text), return_tensors="pt", truncation=True)
            with self._torch.no_grad():
                logits = self.model(**encoded).logits[0]
            positions = (encoded["input_ids"][0] == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
            for mask_index, position in enumerate(positions):
                scores, ids = logits[position].softmax(-1).topk(self.top_k)
                rows += [{"text_index": text_index, "mask_index": mask_index, "rank": rank,
                          "token": self.tokenizer.convert_ids_to_tokens(int(token)), "score": float(score)}
                         for rank, (score, token) in enumerate(zip(scores, ids, strict=True))]
        return pd.DataFrame(rows, columns=["text_index", "mask_index", "rank", "token", "score"])
