DROP TABLE traffic_absolute_marks;
DROP TABLE traffic_daily;
DROP TABLE traffic_records;
DROP TABLE traffic_reports;
DROP FUNCTION traffic_saturating_add(bigint, bigint);
