"""`predict`: options, the schedules that feed the model, the rows and the writers they go to."""
