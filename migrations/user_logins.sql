-- The table the data team asked for, exactly as specified. Applied on every start; when the
-- table already exists it is used as it is.
CREATE TABLE IF NOT EXISTS user_logins(
    user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
    masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date);
