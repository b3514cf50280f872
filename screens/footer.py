"""The footer: the keys that matter on the screen in front, and `?` for the rest.

Textual's Footer shows every binding in order and cuts what does not fit, so at 80x24 the
nine global screen keys pushed a screen's own keys off the edge. This one fills the width
by rank: the screen's own actions, then `?` (every key), `Ctrl+Q`, `:` (the command
line), then the screen keys as room allows; it turns compact below 120 columns and shows
the palette key only where there is room for it (`?` and `:` name it otherwise).
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

WIDE = 120  # from here on: roomy items and the palette key
# The app's keys by rank after the screen's own (rank 0); unlisted app keys come last.
APP_RANK = {"app.help": 1, "app.quit": 2, "app.command": 3}


def item_width(key_display: str, description: str, compact: bool) -> int:
    """Cells one FooterKey takes (its padding and margin as Footer's CSS draws them)."""
    if compact:
        return cell_len(key_display) + (1 + cell_len(description) if description else 0) + 1
    return cell_len(key_display) + 2 + (cell_len(description) + 1 if description else 0)


class KeyFooter(Footer):
    """Footer that ranks the keys instead of cutting them (see the module docstring)."""

    _composed_width = 0

    def shown_keys(self) -> list[tuple[Binding, bool, str]]:
        """(binding, enabled, tooltip) of the keys that fit, in the order shown."""
        width = self.app.size.width
        compact = width < WIDE
        screen = self.screen
        ranked: list[tuple[int, int, Binding, bool, str]] = []
        seen: set[str] = set()
        for n, (node, binding, enabled, tooltip) in enumerate(screen.active_bindings.values()):
            if not binding.show or binding.action in seen or binding.action == "app.command_palette":
                continue
            seen.add(binding.action)
            if binding.id == f"go.{self.app.current_mode}" and len(self.app.screen_stack) == 1:
                continue  # the key of the screen in front: no room spent on where one is
            if node is not self.app:
                rank = 0
            else:
                rank = APP_RANK.get(binding.id or "", 4)
            ranked.append((rank, n, binding, enabled, tooltip))
        ranked.sort(key=lambda r: (r[0], r[1]))
        room = width - (12 if width >= WIDE else 0)
        # `?` is reserved first: whatever else does not fit is behind it.
        help_item = next((r for r in ranked if r[0] == 1), None)
        if help_item is not None:
            room -= self._width(help_item[2], compact)
        chosen = []
        for r in ranked:
            if r is help_item:
                chosen.append(r)
                continue
            need = self._width(r[2], compact)
            if need <= room:
                chosen.append(r)
                room -= need
            elif r[0] >= 4:
                break  # the screen keys go in their order, never with gaps
        return [(b, enabled, tooltip) for _, _, b, enabled, tooltip in chosen]

    def _width(self, binding: Binding, compact: bool) -> int:
        return item_width(self.app.get_key_display(binding), binding.description, compact)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        width = self.app.size.width
        self._composed_width = width
        compact = width < WIDE
        self.set_reactive(Footer.compact, compact)
        self.set_class(compact, "-compact")
        for binding, enabled, tooltip in self.shown_keys():
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip,
            ).data_bind(compact=Footer.compact)
        if width >= WIDE and self.app.ENABLE_COMMAND_PALETTE:
            try:
                _node, binding, enabled, _tooltip = self.screen.active_bindings[self.app.COMMAND_PALETTE_BINDING]
            except KeyError:
                return
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                classes="-command-palette",
                disabled=not enabled,
                tooltip=binding.tooltip or binding.description,
            )

    def on_resize(self, event: events.Resize) -> None:
        if self._bindings_ready and self.app.size.width != self._composed_width:
            self.call_after_refresh(self.recompose)


__all__ = ["KeyFooter", "item_width"]
