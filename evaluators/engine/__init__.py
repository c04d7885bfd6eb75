"""The engines that run a model: opening it once and generating greedy answers.

``spec`` (:class:`ModelSpec`: the config, tokenizer, BOS rule, context and stop ids, resolved
once; the one "prompt fits the context" check), ``loading`` (config and tokenizer first, weights
last; the one load path's pieces), ``tokens`` (BOS rule, prompt encoding, stop rules shared by
the engines), ``backend`` (the engine interface), ``hf`` (the transformers engine) with
``decode`` (its batched greedy decoder), ``vllm`` (the vLLM engine) and ``reference`` (offline
reference models). Nothing is imported here, so torch and transformers load only with a model.
"""
