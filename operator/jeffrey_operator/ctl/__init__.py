"""``jeffreyctl`` (also ``kubectl jeffrey``): see and steer JeffreyIntegrations.

* :mod:`.main` — the command line (argument parsing, one-line errors, ``--watch``);
* :mod:`.client` — the user's kubeconfig and the few API calls, like kubectl;
* :mod:`.view`, :mod:`.render` — pure: a status as a person (or a script) wants to read it;
* :mod:`.plan` — pure: the operator's next step, by the operator's own ``engine.decide``;
* :mod:`.steer`, :mod:`.history` — retry/pause/resume patches, Argo CD awareness, the history.

The reference is ``docs/jeffreyctl.md``. The entry point is :func:`jeffrey_operator.ctl.main.main`
(not re-exported here, so that ``python -m jeffrey_operator.ctl.main`` runs cleanly).
"""
