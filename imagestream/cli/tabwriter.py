"""Go's `text/tabwriter`, for printing what `oc` prints byte for byte.

Invariant: `tabwrite(text, ...)` returns what Go's `tabwriter.Writer` writes for the same
text and the same (minwidth, tabwidth, padding, padchar) with no flags: cells end at a
tab, a column block is a run of consecutive lines that have a cell in that column, each
cell of a block is padded to the block's widest cell plus `padding` (with tabs: rounded up
to a multiple of `tabwidth`), and the last cell of a line is never padded.

Failure it prevents: output that looks like `oc describe` in one terminal and not in the
next, or that a script comparing with oc's output cannot match: oc pads its describe
output with tab characters, not spaces, and which lines align depends on the blocks.

Pure; widths count code points, as Go counts runes.
"""

from __future__ import annotations


def tabwrite(text: str, *, minwidth: int, tabwidth: int, padding: int, padchar: str) -> str:
    lines = [line.split("\t") for line in text.split("\n")]
    if len(lines[-1]) > 1 and not lines[-1][-1]:
        lines[-1].pop()  # Go never terminates an empty cell at the very end of the text
    out: list[str] = []
    widths: list[int] = []

    def pad(text_width: int, cell_width: int) -> None:
        if padchar == "\t":
            if tabwidth == 0:
                return
            cell_width = (cell_width + tabwidth - 1) // tabwidth * tabwidth
            out.append("\t" * ((cell_width - text_width + tabwidth - 1) // tabwidth))
        else:
            out.append(padchar * (cell_width - text_width))

    def write_lines(line0: int, line1: int) -> None:
        for index in range(line0, line1):
            cells = lines[index]
            for column, cell in enumerate(cells):
                if cell:
                    out.append(cell)
                if column < len(widths) and column < len(cells) - 1:
                    pad(len(cell), widths[column])
            if index + 1 < len(lines):
                out.append("\n")

    def format_block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    format_block(0, len(lines))
    return "".join(out)
