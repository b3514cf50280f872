"""What a file is beyond its bytes, read from and written to the real filesystem.

Extended attributes (POSIX ACLs and file capabilities travel as xattrs), inode flags
(chattr) and sparse files' holes. The archiver reads with these functions and the restorer
writes with them; both layers sit above this one, and nothing here knows the repository.

Every reader returns what it could read and names, per attribute, what it could not: a
backup that drops an attribute says so (the product never lies), and a filesystem that
keeps no xattrs at all is not an error.
"""
