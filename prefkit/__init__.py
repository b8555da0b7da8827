"""prefkit: preference data from model responses, and aligned models from preference data.

The pipeline lives in the top-level packages `annotate`, `curate`, `export` and `train`; this
package holds only the command line that ties them together.
"""

__version__ = "0.1.0"
