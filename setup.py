"""What pyproject.toml cannot say: the optional compiled small-query path of the recommender.

``optional=True``: without a C compiler the build goes on and the recommender uses its
pure-Python path, which gives the same answers (tests/recommender/test_recommender.py runs both).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "recommender._smallquery",
            sources=["recommender/_smallquery.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
