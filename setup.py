"""ament_python package definition for ocgs_ros (also installs with ``pip install -e .``)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ocgs_ros"

# Every node and offline command is a console script, so `ros2 run ocgs_ros <name>` and the
# pip-only bring-up find the same executables.
NODES = {
    "sim_publisher": "ocgs_ros.nodes.sim_publisher:main",
    "bag_record": "ocgs_ros.nodes.bag_record:main",
    "bag_play": "ocgs_ros.nodes.bag_play:main",
    "object_mapping_node": "ocgs_ros.nodes.object_mapping_node:main",
    "bev_perception_node": "ocgs_ros.nodes.bev_perception_node:main",
}
COMMANDS = {
    "bringup": "ocgs_ros.bringup:main",
    "sim_dataset": "ocgs_ros.sim.make_dataset:main",
    "sim_to_bag": "ocgs_ros.ros.sim_to_bag:main",
    "gocl_data": "ocgs_ros.ros.gocl_data:main",
    "gocl_train": "ocgs_ros.ocl.train:main",
    "gocl_evaluate": "ocgs_ros.ocl.evaluate:main",
    "gocl_export": "ocgs_ros.ocl.export:main",
    "bev_train": "ocgs_ros.bev.train:main",
    "bev_evaluate": "ocgs_ros.bev.evaluate:main",
    "bev_ablation": "ocgs_ros.bev.ablation:main",
    "gaussian_map_evaluate": "ocgs_ros.mapping.evaluate:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
    ],
    package_data={PACKAGE: ["models/*.pt", "gaussians/raster/csrc/*.cpp"]},
    include_package_data=True,
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="ocgs_ros developers",
    maintainer_email="dev@ocgs-ros.invalid",
    description="Object-aware Gaussian mapping and gradient-calibrated BEV perception for ROS 2",
    license="Apache-2.0",
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in {**NODES, **COMMANDS}.items()],
    },
)
