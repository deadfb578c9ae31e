"""PT-MoE engine: prompt tuning with a mixture of decomposed experts on a frozen causal LM.

No UI or database code lives here; the app and storage layers build on these modules.
"""

__version__ = "0.1.0"
