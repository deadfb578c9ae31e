"""PT-MoE Studio: the Gradio layer over the engine (``ptmoe_core``) and run storage (``storage``)."""
