// How the page writes sizes, modes and times.

const UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.5 KiB"; below 1 KiB in bytes. */
export function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = value < 10 ? 1 : 0;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** "0750" → "rwxr-x---" (setuid, setgid and sticky as s/S and t/T, like ls). */
export function symbolicMode(octal) {
  const mode = Number.parseInt(octal, 8);
  const letters = [..."rwxrwxrwx"].map((letter, index) =>
    mode & (1 << (8 - index)) ? letter : "-",
  );
  const special = [
    [0o4000, 2, "s"],
    [0o2000, 5, "s"],
    [0o1000, 8, "t"],
  ];
  for (const [bit, index, letter] of special) {
    if (mode & bit) letters[index] = letters[index] === "x" ? letter : letter.toUpperCase();
  }
  return letters.join("");
}

/** Whether text is a mode the API takes: 3 or 4 octal digits. */
export function isMode(text) {
  return /^[0-7]{3,4}$/.test(text);
}

const pad = (number) => String(number).padStart(2, "0");

/** An RFC 3339 time as the reader's local "2026-11-24 10:00". */
export function localTime(rfc3339) {
  const time = new Date(rfc3339);
  if (Number.isNaN(time.getTime())) return rfc3339;
  const day = `${time.getFullYear()}-${pad(time.getMonth() + 1)}-${pad(time.getDate())}`;
  return `${day} ${pad(time.getHours())}:${pad(time.getMinutes())}`;
}
