"""Several locations holding replicas of one repository: copies, one catalog, monitoring.

``sites`` opens every configured location and its repository under the one master key;
``copy`` replicates snapshots between them; ``catalog`` merges their snapshot lists;
``monitor`` probes them and keeps a week of usage samples in the state directory.
"""
