"""Detection backbones (feature extractor + FPN) for the Faster R-CNN presets."""
from detector.backbones.efficientnet_lite import (
    IMAGE_MEAN,
    IMAGE_STD,
    BackboneWeightsError,
    backbone_feature_strides,
    efficientnet_lite_fpn,
    preprocessing,
)

__all__ = ["IMAGE_MEAN", "IMAGE_STD", "BackboneWeightsError", "backbone_feature_strides", "efficientnet_lite_fpn",
           "preprocessing"]
