"""FasterSeg kit: neural architecture search for real-time semantic segmentation (Chen et al., ICLR 2020).

``import fasterseg as fs`` gives the public API (`fasterseg.api`): `fs.profile`, `fs.load_config`,
`fs.load_network`, `fs.predict`, `fs.search`, `fs.train`, `fs.evaluate`, `fs.export`, `fs.run_pipeline`,
`fs.load_history`, `fs.RunConfig`, `fs.Architecture`.
"""
from fasterseg.api import (
                           Architecture,
                           RunConfig,
                           evaluate,
                           export,
                           load_config,
                           load_history,
                           load_network,
                           predict,
                           profile,
                           run_pipeline,
                           search,
                           train,
)

__version__ = "0.1.0"
__all__ = ["Architecture", "RunConfig", "evaluate", "export", "load_config", "load_history", "load_network", "predict",
           "profile", "run_pipeline", "search", "train"]
