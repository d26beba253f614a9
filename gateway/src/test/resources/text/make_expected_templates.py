#!/usr/bin/env python3
"""Renders templates/*.jinja with Jinja2 configured as transformers' apply_chat_template
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception,
strftime_now fixed at 2024-07-26, tojson = json.dumps(ensure_ascii=False)) for the conversations
in template_cases.json, and writes template_expected.json, which ChatTemplateTest compares with.
Run from this folder: python3 make_expected_templates.py
"""
import json
from datetime import datetime

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise ValueError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: datetime(2024, 7, 26, 9, 5).strftime(fmt)

expected = []
for case in json.load(open("template_cases.json", encoding="utf-8")):
    template = open("templates/" + case["template"], encoding="utf-8").read()
    variables = dict(case.get("variables", {}))
    variables.update(messages=case["messages"], bos_token=case["bos_token"],
                     eos_token=case["eos_token"],
                     add_generation_prompt=case["add_generation_prompt"])
    try:
        expected.append({"output": env.from_string(template).render(**variables)})
    except ValueError as e:
        expected.append({"error": str(e)})
with open("template_expected.json", "w", encoding="utf-8") as f:
    json.dump(expected, f, ensure_ascii=False, indent=1)
