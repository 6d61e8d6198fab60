"""`chat --system` (issue 22.4): the persona the command asks with, shown in --json's formatted_prompt."""

from __future__ import annotations

import json

from humanlike_tui import cli
from tiny_run import RUN_NAME, install_run


def test_chat_system_sets_the_persona(home, capsys):
    install_run(home)
    code = cli.main(["chat", "--adapter", RUN_NAME, "--prompt", "How are you?", "--json", "--max-new-tokens", "3",
                     "--temperature", "0", "--only", "adapter", "--system", "You are Sam."])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["formatted_prompt"] == "### System:\nYou are Sam.\n\n### Instruct:\nHow are you?\n\n### Output:\n"
    assert data["answers"]["adapter"]["tokens"] > 0
