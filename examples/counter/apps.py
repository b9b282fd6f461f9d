from django.apps import AppConfig


class CounterConfig(AppConfig):
    name = "examples.counter"
    label = "counter"
    verbose_name = "Replicated counters (example)"
