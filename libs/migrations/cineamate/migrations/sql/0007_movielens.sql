-- MovieLens 1M (real or synthetic) as `cineamate dataset load` writes it: the
-- three files of the data set, replaced whole on every load. The listed movies
-- also become a catalogue in catalogue_items. No foreign keys: the loader checks
-- that every rating names a listed movie and a known user before it copies, and
-- a million key checks would double the load time.
CREATE TABLE movielens_movies (
    movie_id  integer PRIMARY KEY,
    title     text    NOT NULL,
    genres    text[]  NOT NULL
);

CREATE TABLE movielens_users (
    user_id     integer  PRIMARY KEY,
    gender      text     NOT NULL CHECK (gender IN ('F', 'M')),
    -- The age group's code: 1 (under 18), 18, 25, 35, 45, 50, 56 (56 and over).
    age         smallint NOT NULL CHECK (age IN (1, 18, 25, 35, 45, 50, 56)),
    occupation  smallint NOT NULL CHECK (occupation BETWEEN 0 AND 20),
    zip_code    text     NOT NULL
);

CREATE TABLE movielens_ratings (
    user_id     integer     NOT NULL,
    movie_id    integer     NOT NULL,
    rating      smallint    NOT NULL CHECK (rating BETWEEN 1 AND 5),
    -- Unix seconds as in ratings.dat; rated_at is the same instant as a timestamp.
    rated_unix  bigint      NOT NULL,
    rated_at    timestamptz GENERATED ALWAYS AS (to_timestamp(rated_unix)) STORED,
    PRIMARY KEY (user_id, movie_id)
);

CREATE INDEX movielens_ratings_by_movie ON movielens_ratings (movie_id);
