/**
 * What a person would see: replays what a program wrote to a terminal — text, carriage returns,
 * line feeds, and the cursor and erase sequences that readline and the client use — onto a grid,
 * so that tests can assert on lines as shown, not on the raw stream.
 *
 * @module
 */

/** The replayed screen: its lines (trailing blanks trimmed), and where the cursor ended. */
export interface Screen {
  lines: string[];
  row: number;
  col: number;
}

/** Two columns for East Asian wide and full-width characters, as terminals (and readline) count them. */
function wide(ch: string): boolean {
  const cp = ch.codePointAt(0) ?? 0;
  return (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf && cp !== 0x303f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x20000 && cp <= 0x3fffd);
}

/**
 * Replays `raw` (as a pseudo-terminal delivered it) on an unbounded screen.
 *
 * @example
 * ```ts
 * import { replay } from "./client_screen.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(replay("phone> 12\r\x1b[2KDONE 1 ok\r\n").lines, ["DONE 1 ok", ""]);
 * ```
 */
export function replay(raw: string): Screen {
  // Each cell holds one character; the second cell of a wide one holds "".
  const grid: string[][] = [[]];
  let row = 0;
  let col = 0;
  const line = (): string[] => {
    while (grid.length <= row) grid.push([]);
    return grid[row];
  };
  const chars = [...raw];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === "\x1b") {
      const rest = chars.slice(i, i + 24).join("");
      // deno-lint-ignore no-control-regex
      const csi = /^\x1b\[([?\d;]*)([A-Za-z@])/.exec(rest);
      if (!csi) {
        i += 1; // a two-character escape
        continue;
      }
      i += [...csi[0]].length - 1;
      const n = csi[1] === "" || csi[1].startsWith("?") ? undefined : Number(csi[1].split(";")[0]);
      switch (csi[2]) {
        case "A":
          row = Math.max(0, row - (n || 1));
          break;
        case "B":
          row += n || 1;
          break;
        case "C":
          col += n || 1;
          break;
        case "D":
          col = Math.max(0, col - (n || 1));
          break;
        case "G":
          col = Math.max(0, (n || 1) - 1);
          break;
        case "H":
          [row, col] = [Math.max(0, (n || 1) - 1), Math.max(0, Number(csi[1].split(";")[1] || 1) - 1)];
          break;
        case "K": {
          const l = line();
          if (!n) l.length = Math.min(l.length, col);
          else if (n === 1) { for (let c = 0; c <= col && c < l.length; c++) l[c] = " "; }
          else l.length = 0;
          break;
        }
        case "J":
          if (!n) {
            line().length = Math.min(line().length, col);
            grid.length = row + 1;
          } else {
            grid.length = 0;
            grid.push([]);
          }
          break;
        default:
          break; // colours, modes
      }
      continue;
    }
    if (ch === "\r") col = 0;
    else if (ch === "\n") row++;
    else if (ch === "\b") col = Math.max(0, col - 1);
    else if (ch < " " || ch === "\x7f") continue;
    else {
      const l = line();
      while (l.length < col) l.push(" ");
      l[col++] = ch;
      if (wide(ch)) l[col++] = "";
    }
  }
  line();
  return { lines: grid.map((cells) => cells.join("").trimEnd()), row, col };
}
