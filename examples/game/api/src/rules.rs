//! Connect Four: a 7-column, 6-row board; players drop discs in turn, red
//! first; four in a row (across, down or diagonally) wins; a full board is a
//! draw. No I/O here, so the rules are unit-tested on the host.

/// Columns of the board.
pub const COLUMNS: usize = 7;
/// Rows of the board.
pub const ROWS: usize = 6;

/// An empty cell, and the two players' discs.
pub const EMPTY: u8 = b'.';
pub const RED: u8 = b'R';
pub const YELLOW: u8 = b'Y';

/// A board as rows from the top, each a string of `COLUMNS` cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    cells: [[u8; COLUMNS]; ROWS],
}

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Played {
    /// The row the disc landed in (0 = top).
    pub row: usize,
    /// The four (or more) cells in a row, if the move won.
    pub line: Option<Vec<(usize, usize)>>,
    /// Whether the board is now full.
    pub full: bool,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            cells: [[EMPTY; COLUMNS]; ROWS],
        }
    }
}

impl Board {
    /// The board the rows describe; an error says what is malformed.
    pub fn from_rows(rows: &[String]) -> Result<Board, String> {
        if rows.len() != ROWS {
            return Err(format!("a board has {ROWS} rows, not {}", rows.len()));
        }
        let mut board = Board::default();
        for (r, row) in rows.iter().enumerate() {
            let bytes = row.as_bytes();
            if bytes.len() != COLUMNS || bytes.iter().any(|c| ![EMPTY, RED, YELLOW].contains(c)) {
                return Err(format!("row {r} of the board is malformed: {row:?}"));
            }
            board.cells[r].copy_from_slice(bytes);
        }
        Ok(board)
    }

    /// The rows, top first.
    pub fn rows(&self) -> Vec<String> {
        self.cells
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    /// Drops `disc` into `column`; an error (for the player) if it cannot.
    pub fn play(&mut self, column: usize, disc: u8) -> Result<Played, String> {
        if column >= COLUMNS {
            return Err(format!(
                "column {column} does not exist: choose a column from 0 to {}",
                COLUMNS - 1
            ));
        }
        let Some(row) = (0..ROWS).rev().find(|&r| self.cells[r][column] == EMPTY) else {
            return Err(format!("column {column} is full: choose another column"));
        };
        self.cells[row][column] = disc;
        Ok(Played {
            row,
            line: self.line_through(row, column),
            full: self.cells[0].iter().all(|&c| c != EMPTY),
        })
    }

    /// The longest line of equal discs through (row, col), if it is four or more.
    fn line_through(&self, row: usize, col: usize) -> Option<Vec<(usize, usize)>> {
        let disc = self.cells[row][col];
        for (dr, dc) in [(0i32, 1i32), (1, 0), (1, 1), (1, -1)] {
            let mut line = vec![(row, col)];
            for sign in [1, -1] {
                let (mut r, mut c) = (row as i32, col as i32);
                loop {
                    r += dr * sign;
                    c += dc * sign;
                    if r < 0 || c < 0 || r >= ROWS as i32 || c >= COLUMNS as i32 {
                        break;
                    }
                    if self.cells[r as usize][c as usize] != disc {
                        break;
                    }
                    line.push((r as usize, c as usize));
                }
            }
            if line.len() >= 4 {
                line.sort();
                return Some(line);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discs_fall_to_the_lowest_free_row() {
        let mut b = Board::default();
        assert_eq!(b.play(3, RED).unwrap().row, 5);
        assert_eq!(b.play(3, YELLOW).unwrap().row, 4);
        assert_eq!(b.rows()[5], "...R...");
        assert_eq!(b.rows()[4], "...Y...");
        assert_eq!(Board::from_rows(&b.rows()).unwrap(), b);
    }

    #[test]
    fn four_in_a_row_wins_in_every_direction() {
        let mut b = Board::default();
        for c in 0..3 {
            assert!(b.play(c, RED).unwrap().line.is_none());
        }
        assert_eq!(b.play(3, RED).unwrap().line.unwrap().len(), 4);

        let mut b = Board::default();
        for _ in 0..3 {
            b.play(6, YELLOW).unwrap();
        }
        assert!(b.play(6, YELLOW).unwrap().line.is_some());

        // A rising diagonal: (5,0) (4,1) (3,2) (2,3).
        let mut b = Board::default();
        for (col, fill) in [(1, 1), (2, 2), (3, 3)] {
            for _ in 0..fill {
                b.play(col, YELLOW).unwrap();
            }
        }
        for col in 0..3 {
            b.play(col, RED).unwrap();
        }
        let won = b.play(3, RED).unwrap();
        assert_eq!(won.line.unwrap(), vec![(2, 3), (3, 2), (4, 1), (5, 0)]);
    }

    #[test]
    fn full_columns_and_missing_columns_are_refused() {
        let mut b = Board::default();
        for i in 0..ROWS {
            b.play(0, if i % 2 == 0 { RED } else { YELLOW }).unwrap();
        }
        assert!(b.play(0, RED).unwrap_err().contains("column 0 is full"));
        assert!(b.play(7, RED).unwrap_err().contains("does not exist"));
        assert!(Board::from_rows(&["x".into()]).is_err());
    }

    #[test]
    fn a_full_board_without_a_line_is_a_draw() {
        // Columns filled in pairs so that no four line up.
        let mut b = Board::default();
        let order = [0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 2, 3, 2, 3, 2, 3, 3, 2, 3, 2, 3, 2, 4, 5,
            4, 5, 4, 5, 5, 4, 5, 4, 5, 4, 6, 6, 6, 6, 6, 6];
        let mut last = None;
        for (i, col) in order.iter().enumerate() {
            let p = b.play(*col, if i % 2 == 0 { RED } else { YELLOW }).unwrap();
            assert!(p.line.is_none(), "move {i} in column {col} made a line:\n{:?}", b.rows());
            last = Some(p);
        }
        assert!(last.unwrap().full);
    }
}
