"""The class lists of the simulated worlds, each defined once: the simulator, the BEV model, the ROS
messages and the reports all import them from here.

* Driving world: :data:`MAP_CLASSES`, the six nuScenes map layers in layer order (BEV map
  segmentation), and :data:`BOX_CLASSES`, the 3D box classes in label order (BEV detection;
  ``bev/nuscenes.py`` maps nuScenes categories onto them).
* Tabletop world: its object kinds are the catalogue (:func:`ocgs_ros.sim.catalogue.default_catalogue`).
"""
from __future__ import annotations

MAP_CLASSES: tuple[str, ...] = ("drivable_area", "ped_crossing", "walkway", "stop_line", "carpark_area", "divider")
BOX_CLASSES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")
