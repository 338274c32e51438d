"""Joint fine-tuning: the voice and face models and a fusion head trained together (``emolib train fusion --finetune``)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .nets import FaceModel, FusionModel, VoiceModel

AUX_WEIGHT = 0.5  # the weight of each of the voice and face heads' own losses


class JointFusion(nn.Module):
    """The voice and face models and the fusion head trained together (``emolib train fusion --finetune``).

    ``forward`` gives the fusion logits from raw inputs; it also keeps each model's own logits, whose cross-entropy
    (``extra_loss``, AUX_WEIGHT each) trains the voice and face heads with their moving encoders, so each saved
    encoder keeps a head that fits it. ``parameter_groups`` gives the voice and face encoders their own learning
    rates; ``modality_parameters`` and ``modality_scores`` serve OGM-GE (``emolib.train.balance``).
    """

    def __init__(self, voice: VoiceModel, face: FaceModel, fusion: FusionModel, voice_lr: float, face_lr: float):
        super().__init__()
        self.voice, self.face, self.fusion = voice, face, fusion
        self.config = fusion.config
        self.voice_lr, self.face_lr = voice_lr, face_lr
        self.auxiliary = None

    def features(self, input_values, attention_mask, pixels, present, speech_mask=None):
        voice = self.voice.features(input_values, attention_mask, speech_mask)
        face = self.face.features(pixels) * present[:, 1:].to(pixels.dtype)
        return voice, face

    def forward(self, input_values, attention_mask, pixels, present, speech_mask=None) -> torch.Tensor:
        voice, face = self.features(input_values, attention_mask, pixels, present, speech_mask)
        self.auxiliary = (self.voice.classify(voice), self.face.classify(face), present)
        return self.fusion(voice, face, present)

    def extra_loss(self, labels: torch.Tensor) -> torch.Tensor:
        """The voice and face heads' cross-entropy on the last batch (the face head only on clips with a face)."""
        voice, face, present = self.auxiliary
        loss = nn.functional.cross_entropy(voice.float(), labels)
        with_face = present[:, 1] > 0
        if with_face.any():
            loss = loss + nn.functional.cross_entropy(face[with_face].float(), labels[with_face])
        return AUX_WEIGHT * loss

    def parameter_groups(self, lr: float) -> list[dict]:
        """The voice encoder at ``voice_lr``, the face encoder at ``face_lr``, everything else (heads, pooling, fusion) at ``lr``."""
        groups = {"voice": [], "face": [], "rest": []}
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                groups["voice" if name.startswith("voice.encoder.") else "face" if name.startswith("face.encoder.") else "rest"].append(parameter)
        rates = {"voice": self.voice_lr, "face": self.face_lr, "rest": lr}
        return [{"params": params, "lr": rates[name], "base_lr": rates[name]} for name, params in groups.items() if params]

    def modality_parameters(self) -> dict:
        own = self.fusion.modality_parameters()
        return {"voice": own["voice"] + [(parameter, None) for parameter in self.voice.parameters() if parameter.requires_grad],
                "face": own["face"] + [(parameter, None) for parameter in self.face.parameters() if parameter.requires_grad]}

    def modality_scores(self, batch: dict, labels: torch.Tensor) -> dict:
        """Each modality alone through the fusion head (``FusionModel.scores_alone``) on this batch's embeddings."""
        voice, face = self.features(**{name: value for name, value in batch.items() if name != "label"})
        return self.fusion.scores_alone(voice, face, batch["present"], labels)
