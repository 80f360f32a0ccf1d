"""assignment6: the Udacity Deep Learning course's Assignment 6 (LSTMs) in TensorFlow 2."""
import setuptools

setuptools.setup(
    name="assignment6",
    version="0.1.0",
    description=("A faithful TensorFlow 2 port of the Udacity Deep Learning course's "
                 "Assignment 6 (6_lstm.ipynb): character LSTMs on text8."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT (code); CC BY-SA 3.0 (the embedded Wikipedia text sample)",
    python_requires=">=3.9",
    packages=["assignment6"],
    package_data={"assignment6": ["data/*.zip", "data/*.json"]},
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.16",
        "numpy>=1.23",
        "absl-py>=1.0",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "nbclient>=0.7",
            "nbformat>=5.7",
            "ipykernel>=6",
            "matplotlib>=3.5",
            "tf_keras>=2.16",
        ],
        "notebook": ["jupyter", "matplotlib>=3.5", "tensorboard"],
        # The oldest TensorFlow the port supports, as CI tests it (.ci/run): with "test".
        "oldest": ["tensorflow==2.16.2", "tf_keras==2.16.0", "numpy<2"],
    },
)
