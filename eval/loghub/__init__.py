"""Held-out evaluation on public Loghub material (see eval/loghub/README.md): template grouping accuracy on
real logs of 16 systems and session anomaly detection on real, labelled HDFS block sessions."""
