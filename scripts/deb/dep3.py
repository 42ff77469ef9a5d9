#!/usr/bin/env python3
"""Turn git format-patch files into Debian patches with a DEP-3 header.

    dep3.py OUTDIR PATCH...

For each PATCH, writes OUTDIR/<same name>: a DEP-3 header made from the
mail header and the commit message (Description: the subject, then the
message as the long description; Author: the From: line; Forwarded: no;
Last-Update: the Date: line as YYYY-MM-DD), then "---" and the rest of
the patch after the message (diffstat and diff) unchanged.  Prints one
name per line, in the order given, for debian/patches/series.
"""

import email.header
import email.parser
import email.policy
import email.utils
import os
import re
import sys

# Lines that patch(1) could take for the start of a diff, even indented.
DIFFISH = re.compile(r'^\s*(diff |--- |\+\+\+ |\*\*\* |@@ |Index: )')


def fail(msg):
    sys.stderr.write('dep3.py: %s\n' % msg)
    sys.exit(1)


def header_text(value):
    """A header's text: encoded words decoded, folding undone."""
    parts = email.header.decode_header(str(value))
    out = ''
    for text, charset in parts:
        if isinstance(text, bytes):
            text = text.decode(charset or 'ascii', 'replace')
        out += text
    return ' '.join(out.split())


def convert(path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    head, sep, rest = text.partition('\n\n')
    if not sep:
        fail('%s: no mail header' % path)
    # The first line is git's mbox separator ("From <sha> <date>").
    if head.startswith('From '):
        head = head.split('\n', 1)[1]
    msg = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(head + '\n')
    for key in ('From', 'Date', 'Subject'):
        if msg[key] is None:
            fail('%s: no %s: header' % (path, key))
    author = header_text(msg['From'])
    subject = re.sub(r'^\[PATCH[^\]]*\]\s*', '', header_text(msg['Subject']))
    date = email.utils.parsedate_to_datetime(header_text(msg['Date']))

    # The commit message ends at git's "---" line, before the diffstat.
    m = re.search(r'^---$', rest, re.M)
    if not m:
        fail('%s: no "---" line after the commit message' % path)
    body = rest[:m.start()].rstrip('\n').split('\n')
    diff = rest[m.start():]
    if not re.search(r'^diff --git ', diff, re.M):
        fail('%s: no diff' % path)

    lines = ['Description: ' + subject]
    for line in body:
        line = line.rstrip()
        if DIFFISH.match(line):
            fail('%s: message line looks like a diff header: %r' % (path, line))
        lines.append(' ' + line if line else ' .')
    # No trailing " ." paragraph separators.
    while lines[-1] == ' .':
        lines.pop()
    lines += [
        'Author: ' + author,
        'Forwarded: no',
        'Last-Update: ' + date.strftime('%Y-%m-%d'),
    ]
    return '\n'.join(lines) + '\n' + diff


def main():
    if len(sys.argv) < 3:
        fail('usage: dep3.py OUTDIR PATCH...')
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    for path in sys.argv[2:]:
        name = os.path.basename(path)
        out = convert(path)
        with open(os.path.join(outdir, name), 'w', encoding='utf-8') as f:
            f.write(out)
        print(name)


if __name__ == '__main__':
    main()
