"""The client side of split inference: device cost models, bandwidth estimators and
partition policies (see ``docs/clients.md``)."""

from graft.client.devices import DEVICES, DeviceModel, get_device
from graft.client.estimator import BandwidthEstimator, EwmaEstimator, HarmonicEstimator
from graft.client.partition import POLICIES, Choice, choose_partition, evaluate_points

__all__ = [
    "DEVICES",
    "POLICIES",
    "BandwidthEstimator",
    "Choice",
    "DeviceModel",
    "EwmaEstimator",
    "HarmonicEstimator",
    "choose_partition",
    "evaluate_points",
    "get_device",
]
