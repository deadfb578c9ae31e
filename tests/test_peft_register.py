"""Why PT-MoE, SMoP and DPT are not PEFT methods (README, "Adapter folders"): PEFT 0.21's
``register_peft_method`` accepts only names already in its closed ``PeftType`` enum, and its
prompt-learning forward builds the prompt from the batch size alone. If a PEFT upgrade changes
either, this test fails and the README's two lines must be revisited."""

from __future__ import annotations

import inspect

import pytest
from peft import PeftModel, PeftType, PromptTuningConfig
from peft.utils import register_peft_method


@pytest.mark.parametrize("name", ["ptmoe", "smop", "dpt"])
def test_register_peft_method_refuses_a_new_prompt_learning_name(name):
    assert name.upper() not in list(PeftType)
    with pytest.raises(ValueError, match="Unknown PEFT type"):
        register_peft_method(name=name, config_cls=PromptTuningConfig, model_cls=None)


def test_peft_prompt_learning_never_sees_the_input():
    # get_prompt(batch_size, task_ids, max_cache_len): no input ids or embeddings, so no router on the input
    assert list(inspect.signature(PeftModel.get_prompt).parameters) == ["self", "batch_size", "task_ids",
                                                                        "max_cache_len"]
