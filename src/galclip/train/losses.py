"""Contrastive losses for cross-modal alignment, as pure functions of embeddings.

The symmetric InfoNCE loss of CLIP (Radford et al. 2021, eq. in Fig. 3; Oord et al. 2018) as used
by AstroCLIP (Parker et al. 2024, eq. 1): for N matched pairs (image i, spectrum i) with
unit-norm embeddings, logits ``s * I @ S.T`` and cross-entropy towards the diagonal in both
directions, averaged. The functions know nothing of the model; the trainer sums the ``*_loss``
terms of the returned dict.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_logits(image_emb: torch.Tensor, spectrum_emb: torch.Tensor,
                logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Scaled cosine similarities ``(N_image, N_spectrum)``; rows are images."""
    return logit_scale * image_emb @ spectrum_emb.transpose(0, 1)  # (N, N)


def clip_loss(image_emb: torch.Tensor, spectrum_emb: torch.Tensor,
              logit_scale: torch.Tensor | float) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE over matched pairs ``image_emb[i] <-> spectrum_emb[i]``.

    Returns ``{"contrastive_loss": (L_image->spectrum + L_spectrum->image) / 2}``.
    """
    if image_emb.shape != spectrum_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"clip_loss needs two (N, E) tensors of the same shape, got "
                         f"{tuple(image_emb.shape)} and {tuple(spectrum_emb.shape)}")
    logits = clip_logits(image_emb, spectrum_emb, logit_scale)  # (N, N)
    labels = torch.arange(logits.shape[0], device=logits.device)
    image_to_spectrum = F.cross_entropy(logits, labels)
    spectrum_to_image = F.cross_entropy(logits.transpose(0, 1), labels)
    return {"contrastive_loss": 0.5 * (image_to_spectrum + spectrum_to_image)}


def neighbourhood_loss(embedding: torch.Tensor, reference: torch.Tensor,
                       temperature: float = 0.1) -> dict[str, torch.Tensor]:
    """Keep ``embedding``'s neighbourhoods those of ``reference`` (relational distillation).

    For each row, the softmax over the batch of its cosine similarities to the other rows
    (temperature ``temperature``) in the reference space is the target of the same softmax in the
    embedding space: ``KL(reference || embedding)``, averaged over rows. Label-free: the
    alignment uses it to keep what the frozen spectrum backbone knows (its redshift precision)
    that the images cannot predict, which InfoNCE alone lets the heads forget.
    """
    if embedding.ndim != 2 or reference.ndim != 2 or len(embedding) != len(reference):
        raise ValueError(f"neighbourhood_loss needs two (N, *) tensors with the same N, got "
                         f"{tuple(embedding.shape)} and {tuple(reference.shape)}")
    n = len(embedding)
    if n < 2:
        return {"neighbourhood_loss": embedding.sum() * 0.0}
    off = ~torch.eye(n, dtype=torch.bool, device=embedding.device)
    e, r = F.normalize(embedding, dim=-1), F.normalize(reference.detach().float(), dim=-1)
    log_p = F.log_softmax((e @ e.T / temperature)[off].view(n, n - 1), dim=-1)
    log_q = F.log_softmax((r @ r.T / temperature)[off].view(n, n - 1), dim=-1)
    return {"neighbourhood_loss": F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")}
