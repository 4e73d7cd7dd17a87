"""The jeffrey-operator playground (``jeffrey-operator playground``, ``make demo``)."""
