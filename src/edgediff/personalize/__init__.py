"""Real small models for Part C: training, personalization, and the measured PAI curve (issue 8).

- :mod:`~edgediff.personalize.data`: scikit-learn's digits at 16x16, the three users' styles, prompts;
- :mod:`~edgediff.personalize.classifier`: the shipped digit classifier (accuracy score);
- :mod:`~edgediff.personalize.train`: ``train-tiny`` (VAE, cluster-wide model, DreamBooth fine-tunes);
- :mod:`~edgediff.personalize.pai`: hybrid inference at many splits, eq. (1), the sigmoid fit;
- :mod:`~edgediff.personalize.reuse`: the caching paper's reusable bound ``S*`` (eqs. (1)-(2));
- :mod:`~edgediff.personalize.figures`: Fig. 6 and Fig. 7 look-alikes.

The trained weights live with the runtime (``edgediff/runtime/weights``), which loads them as
the embedded ``tiny`` models. See docs/results-pai.md.
"""
