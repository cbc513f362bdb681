"""The help screen: every key and the filter syntax."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# gwsproxy inspector

Each row is a user-data **request paired with the notification it caused**; unsolicited
notifications and raw (unreadable) records are listed too, dimmed (`u` hides them).
The verdict column is computed from the bodies of the rows on screen; until then it shows the
capture status, dimmed. `~85` is a referenceId matched by inference, `85` an exact match.

## Keys

| key | what it does |
|---|---|
| `↑` `↓` `j` `k` `PgUp` `PgDn` `Home` | move in the list |
| `End` | last row; with `--follow` the cursor then stays on the newest row |
| `/` | filter; `Enter` or `↓` back to the list, `Esc` clears it |
| `1` … `6` | Diff, Request, Response, Notification, Timeline, Replay tab |
| `d` | diff: changed keys only / all keys |
| `Enter` | on a diff row: the whole value; on a timeline row: go to that record |
| `u` | show / hide unsolicited notifications and raw records |
| `p` | playback of the rows in the list, from the selected one |
| `e` | export the selected pair as `pair-<id>.json` (current directory) |
| `c` | a pytest test asserting the selected pair (copied, and shown to save) |
| `r` | replay the open captures against a GWS; while one runs, `r` or `Esc` asks to stop it |
| `Ctrl+T` | dark / light theme |
| `Ctrl+P` | command palette (filter by verdict, playback, export, ...) |
| `?` `F1` | this help |
| `q` | quit |

## Playback

| key | what it does |
|---|---|
| `Space` | pause / resume |
| `n` `→` | step forward |
| `←` | step back |
| `1` `2` `3` | 1x, 10x, 100x |
| `[` `]` | 10 steps back / forward |
| `Home` `End` | first / last step |
| `Esc` `q` | back to the list |

## Replay

`r` re-sends every pair of the open captures to a GWS (the target URL, by default the last one
used) as the recorded agents, or as one user, and compares how each changes user data with the
recording: same keys, same values, same types. The `replay` column then shows `pass` or `FAIL`
next to the recorded verdict, the status line counts them, and the Replay tab (`6`) shows why a
pair failed, key by key. Keys matching an ignore regex are not compared.

## Filter

Terms are ANDed; `-term` or `!term` negates one. Values are case-insensitive;
`*` and `?` are wildcards. Free text matches the interaction id, agent (scope), media,
operation, referenceId, status and requested keys.

| term | matches |
|---|---|
| `media:voice` | media (`voice`, `chat`, `sms`, `facebook`, `email`, `workitem`, ...) |
| `op:update` | operation (a part of it: `op:delete` is both deletes) |
| `verdict:coerced` | verdict (a prefix will do): `applied` `coerced` `not-applied` \
`side-effects` `rejected` `error` `timeout` `lost` `ambiguous` `failed` `incomplete`; matches \
appear as bodies are read |
| `key:UserData1` | a requested key (`key:User*`) |
| `agent:agent1` | the agent's scope (a part of it) |
| `interaction:CH01` | the interaction id (a part of it) |
| `status:timeout` | the capture status (`matched` `error` `rejected` `timeout` `lost` \
`ambiguous` `failed` `incomplete`) |
| `kind:pair` | `pair`, `unsolicited`, `raw`, `note` |
| `ref:85` | the referenceId |
| `replay:fail` | pairs the last replay (`r`) failed; `replay:pass` those it passed |

Examples: `media:chat -verdict:applied`, `key:UserData1 agent:agent2`, `!media:voice timeout`.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP)
